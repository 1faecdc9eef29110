"""Steering a model: the one shift hook (one rule for where a vector is added) and the one capture hook, the
``SteeringVector`` type, aggregators that make one from deltas, and batched steered generation.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "Steering": "lcross.steering.hooks",
    "steer": "lcross.steering.hooks",
    "apply_steering": "lcross.steering.hooks",
    "shifting": "lcross.steering.hooks",
    "capturing": "lcross.steering.hooks",
    "SteeringVector": "lcross.steering.vector",
    "caa_vector": "lcross.steering.aggregators",
    "repe_vector": "lcross.steering.aggregators",
    "make_aggregator": "lcross.steering.aggregators",
    "steering_vector": "lcross.steering.aggregators",
    "generate": "lcross.steering.generation",
    "generate_grid": "lcross.steering.generation",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
