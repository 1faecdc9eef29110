"""lcross: transfer concept steering vectors between language models (L-Cross Modulation, Huang et al. 2025).

The core (concepts, models, activations, steering, the transform) is plain PyTorch. ``LCross`` (the
LightningModule) and ``PairedDeltas`` (the DataModule) are imported lazily so that ``import lcross`` stays light.
"""

from lcross.activations import extract_deltas
from lcross.aggregators import caa_vector, repe_vector, steering_vector
from lcross.concepts import Concept, ContrastivePair, load_concept
from lcross.efficacy import completion_logprobs, steering_sweep
from lcross.errors import LCrossInputError
from lcross.generation import generate, generate_grid
from lcross.layerwise_transform import LayerwiseTransform
from lcross.loading import load_transform
from lcross.metrics import BehaviorMatching, behavior_matching_probability
from lcross.models import ModelSpec, load_model
from lcross.steering import Steering, apply_steering, steer
from lcross.steering_vector import SteeringVector
from lcross.transform import LinearTransform

__all__ = [
    "BehaviorMatching",
    "Concept",
    "ContrastivePair",
    "LCross",
    "LCrossInputError",
    "LayerwiseTransform",
    "LinearTransform",
    "ModelSpec",
    "PairedDeltas",
    "Steering",
    "SteeringVector",
    "apply_steering",
    "behavior_matching_probability",
    "caa_vector",
    "completion_logprobs",
    "extract_deltas",
    "generate",
    "generate_grid",
    "load_concept",
    "load_model",
    "load_transform",
    "repe_vector",
    "steer",
    "steering_sweep",
    "steering_vector",
]


def __getattr__(name: str):
    if name == "LCross":
        from lcross.system import LCross

        return LCross
    if name == "PairedDeltas":
        from lcross.datamodule import PairedDeltas

        return PairedDeltas
    raise AttributeError(f"module 'lcross' has no attribute {name!r}")
