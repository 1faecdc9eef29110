"""lcross: transfer concept steering vectors between language models (L-Cross Modulation, Huang et al. 2025).

The library is plain PyTorch in packages named for their concern (``lcross.models``, ``lcross.concepts``,
``lcross.steering``, ``lcross.extraction``, ``lcross.transform``, ``lcross.formats``, ``lcross.corpus``,
``lcross.evaluation``), with the Lightning layers in ``lcross.training`` and the commands in ``lcross.cli``. The names
below are the everyday ones; each loads its module on first use, so ``import lcross`` imports no framework.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "BehaviorMatching": "lcross.evaluation.metrics",
    "Concept": "lcross.concepts.pairs",
    "ContrastivePair": "lcross.concepts.pairs",
    "CorpusSettings": "lcross.corpus.settings",
    "ExtractionSettings": "lcross.extraction.settings",
    "LCross": "lcross.training.module",
    "LCrossInputError": "lcross.errors",
    "LCrossFitError": "lcross.errors",
    "LayerwiseTransform": "lcross.transform.layerwise",
    "MLPTransform": "lcross.transform.mlp",
    "LinearTransform": "lcross.transform.linear",
    "ModelSpec": "lcross.models.loading",
    "PairedDeltas": "lcross.training.datamodule",
    "Steering": "lcross.steering.hooks",
    "SteeringVector": "lcross.steering.vector",
    "TextPair": "lcross.concepts.pairs",
    "Transform": "lcross.transform.base",
    "apply_steering": "lcross.steering.hooks",
    "behavior_matching_probability": "lcross.evaluation.metrics",
    "caa_vector": "lcross.steering.aggregators",
    "completion_logprobs": "lcross.evaluation.ab",
    "extract_deltas": "lcross.extraction.activations",
    "generate": "lcross.steering.generation",
    "generate_grid": "lcross.steering.generation",
    "load_concept": "lcross.concepts.loading",
    "load_model": "lcross.models.loading",
    "load_transform": "lcross.transform.loading",
    "load_vector": "lcross.formats.vector_files",
    "make_judge": "lcross.evaluation.judges",
    "repe_vector": "lcross.steering.aggregators",
    "save_vector": "lcross.formats.vector_files",
    "steer": "lcross.steering.hooks",
    "steering_sweep": "lcross.evaluation.ab",
    "steering_vector": "lcross.steering.aggregators",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
