"""Training T with Lightning: the ``LCross`` LightningModule, the ``PairedDeltas`` DataModule, checkpoints, TensorBoard
views, reading a fit's config, and leave-one-concept-out comparison of families of T.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "LCross": "lcross.training.module",
    "PairedDeltas": "lcross.training.datamodule",
    "AtomicCheckpointIO": "lcross.training.checkpoints",
    "data_module_from_config": "lcross.training.config",
    "crossvalidate": "lcross.training.crossval",
    "Family": "lcross.training.families",
    "families_named": "lcross.training.families",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
