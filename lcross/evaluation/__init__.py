"""Judging steering: A/B likelihood sweeps, the variants compared (own SV, transferred, random baselines), the
behaviour-matching metric, judges of generated answers and their agreement.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "completion_logprobs": "lcross.evaluation.ab",
    "steering_sweep": "lcross.evaluation.ab",
    "comparison_vectors": "lcross.evaluation.variants",
    "random_vectors": "lcross.evaluation.variants",
    "BehaviorMatching": "lcross.evaluation.metrics",
    "behavior_matching_probability": "lcross.evaluation.metrics",
    "Judge": "lcross.evaluation.judges",
    "make_judge": "lcross.evaluation.judges",
    "EvaluationData": "lcross.evaluation.data",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
