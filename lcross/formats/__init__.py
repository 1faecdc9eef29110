"""Steering vectors in the files and libraries other programs use: llama.cpp / repeng control vectors (``.gguf``),
lcross's ``.safetensors`` (dtype and provenance kept), PyTorch ``.pt``, chosen by suffix; and the steering-vectors
library's ``SteeringVector``.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "SUFFIXES": "lcross.formats.vector_files",
    "save_vector": "lcross.formats.vector_files",
    "load_vector": "lcross.formats.vector_files",
    "to_steering_vectors": "lcross.formats.steering_vectors",
    "from_steering_vectors": "lcross.formats.steering_vectors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
