"""Loading language models and working with their layers: hub ids, folders and GGUF files, decoder blocks found
by name, prompt encoding, packing a pair into one row, text limits, and tiny models built in code for tests.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "ModelSpec": "lcross.models.loading",
    "load_model": "lcross.models.loading",
    "as_spec": "lcross.models.loading",
    "resolve_device": "lcross.models.loading",
    "decoder_block": "lcross.models.layers",
    "decoder_blocks": "lcross.models.layers",
    "block_output": "lcross.models.layers",
    "check_layer": "lcross.models.layers",
    "parse_layers": "lcross.models.layers",
    "as_layer_list": "lcross.models.layers",
    "layer_label": "lcross.models.layers",
    "encode": "lcross.models.prompting",
    "encode_many": "lcross.models.prompting",
    "pad_batch": "lcross.models.prompting",
    "Encoded": "lcross.models.prompting",
    "context_length": "lcross.models.text_limits",
    "check_text_lengths": "lcross.models.text_limits",
    "tiny_model": "lcross.models.tiny",
    "byte_tokenizer": "lcross.models.tiny",
    "packaged_gguf": "lcross.models.packaged",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
