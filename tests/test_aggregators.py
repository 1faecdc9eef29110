import numpy as np
import pytest
import torch

from lcross import caa_vector, repe_vector
from lcross.steering.aggregators import steering_vector


def test_caa_vector_is_the_mean_of_the_deltas():
    deltas = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0]])
    assert torch.equal(caa_vector(deltas), torch.tensor([2.0, 1.0]))


def test_repe_vector_points_from_negative_to_positive_with_the_mean_projection_as_scale():
    g = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5
    # deltas mostly along +direction, with a little noise: the top singular vector is about +-direction
    deltas = 2.0 * direction + 0.05 * torch.randn(50, 3, generator=g, dtype=torch.float64).float()
    vector = repe_vector(deltas)
    _, _, vh = np.linalg.svd(deltas.double().numpy(), full_matrices=False)  # independent reference
    top = torch.from_numpy(vh[0])
    top = top if float(deltas.double().mean(0) @ top) > 0 else -top  # sign: towards the positive completions
    scale = float((deltas.double() @ top).mean())
    torch.testing.assert_close(vector.double(), top * scale, atol=1e-6, rtol=1e-6)
    assert vector @ direction > 0 and vector.norm().item() == pytest.approx(2.0, abs=0.05)
    # flipping every pair flips the vector: the sign follows the data, not the SVD's arbitrary sign
    torch.testing.assert_close(repe_vector(-deltas), -vector)


def test_unknown_method_and_too_few_pairs_are_clear_errors():
    from lcross import LCrossInputError

    with pytest.raises(LCrossInputError, match="unknown steering-vector method"):
        steering_vector(torch.zeros(3, 2), "mean")
    with pytest.raises(LCrossInputError, match="at least two contrastive pairs"):
        caa_vector(torch.zeros(1, 2))
