"""Reading activations: per-pair deltas and token states at a layer, the on-disk cache keyed on what determines them,
the store that owns the two models, extraction sharded across processes, and its settings (``data.extraction``).
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "extract_deltas": "lcross.extraction.activations",
    "extract_states": "lcross.extraction.activations",
    "last_token_states": "lcross.extraction.activations",
    "token_states": "lcross.extraction.activations",
    "states_of_rows": "lcross.extraction.activations",
    "DeltaCache": "lcross.extraction.cache",
    "cache_key": "lcross.extraction.cache",
    "DeltaStore": "lcross.extraction.store",
    "ExtractionSettings": "lcross.extraction.settings",
    "extract_deltas_sharded": "lcross.extraction.sharded",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
