"""The transform T from a source model's hidden space to a target's: the contract every form keeps (``base``), its
forms (``linear``, ``layerwise``, the non-linear ``mlp``), closed-form fits and sufficient statistics, losses and
penalties, files and the Hub card, and loading a trained T back.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "Transform": "lcross.transform.base",
    "LinearTransform": "lcross.transform.linear",
    "LayerwiseTransform": "lcross.transform.layerwise",
    "MLPTransform": "lcross.transform.mlp",
    "fit_map": "lcross.transform.closed_form",
    "GramStats": "lcross.transform.sufficient_stats",
    "solve": "lcross.transform.sufficient_stats",
    "accumulate": "lcross.transform.sufficient_stats",
    "load_transform": "lcross.transform.loading",
    "fit_loss": "lcross.transform.losses",
    "penalties": "lcross.transform.losses",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
