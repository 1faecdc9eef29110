"""Steering vectors in the files and libraries other programs use, chosen by suffix: llama.cpp / repeng / EasySteer
control vectors (``.gguf``), lcross's ``.safetensors`` (dtype and provenance kept), PyTorch ``.pt``, EasySteer steering
specs (``.easysteer.json``) and vLLM-Hook configs (``.vllm_hook.json``); and the steering-vectors library's
``SteeringVector``. One class per format (``VectorFormat``), listed in ``FORMATS``.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "FORMATS": "lcross.formats.vector_files",
    "SUFFIXES": "lcross.formats.vector_files",
    "save_vector": "lcross.formats.vector_files",
    "load_vector": "lcross.formats.vector_files",
    "format_for": "lcross.formats.vector_files",
    "format_path": "lcross.formats.vector_files",
    "named_format": "lcross.formats.vector_files",
    "VectorFormat": "lcross.formats.vector_format",
    "GgufFile": "lcross.formats.gguf_file",
    "ForeignLayersWarning": "lcross.formats.gguf_file",
    "SafetensorsFile": "lcross.formats.safetensors_file",
    "PtFile": "lcross.formats.pt_file",
    "EasySteerSpec": "lcross.formats.easysteer_spec",
    "VllmHookConfig": "lcross.formats.vllm_hook_config",
    "to_steering_vectors": "lcross.formats.steering_vectors",
    "from_steering_vectors": "lcross.formats.steering_vectors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
