"""Judging steering: A/B likelihood sweeps, the variants compared (own SV, transferred, random baselines), the
behaviour-matching metric, judges of generated answers (the ``judges`` subpackage) and their agreement, and the two
evaluation engines the efficacy callbacks call: ``ab_efficacy`` (A/B sweeps of every evaluation concept) and
``generation_efficacy`` (judged steered answers).
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "completion_logprobs": "lcross.evaluation.ab",
    "steering_sweep": "lcross.evaluation.ab",
    "comparison_vectors": "lcross.evaluation.variants",
    "random_vectors": "lcross.evaluation.variants",
    "BehaviorMatching": "lcross.evaluation.metrics",
    "behavior_matching_probability": "lcross.evaluation.metrics",
    "Judge": "lcross.evaluation.judges.base",
    "make_judge": "lcross.evaluation.judges.registry",
    "register_judge": "lcross.evaluation.judges.registry",
    "ConceptJudges": "lcross.evaluation.judges.per_concept",
    "ABEfficacySettings": "lcross.evaluation.ab_efficacy",
    "evaluate_ab_efficacy": "lcross.evaluation.ab_efficacy",
    "GenerationSettings": "lcross.evaluation.generation_efficacy",
    "evaluate_generation_efficacy": "lcross.evaluation.generation_efficacy",
    "EvaluationData": "lcross.evaluation.data",
    "FluencyJudge": "lcross.evaluation.judges.fluency",
    "combine": "lcross.evaluation.composite",
    "choose_beta": "lcross.evaluation.operating_points",
    "split_prompts": "lcross.evaluation.operating_points",
    "sweep_reliability": "lcross.evaluation.reliability",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
