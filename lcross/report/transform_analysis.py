"""Analysis of transforms, as in the paper's Table 4 and Figure 3: how alike are Ts fitted on different concepts
(SSIM, Frobenius distance, singular-value spectra) compared with random Ts, and a 2-D map of per-pair deltas."""

from __future__ import annotations

from itertools import combinations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def ssim(a: torch.Tensor, b: torch.Tensor, kernel_size: int = 11, gaussian: bool = True) -> float:
    """Structural similarity of two matrices seen as one-channel images, over their joint value range."""
    a, b = a.detach().double(), b.detach().double()
    data_range = float(torch.maximum(a.max(), b.max()) - torch.minimum(a.min(), b.min()))
    value = structural_similarity_index_measure(
        a[None, None], b[None, None], data_range=data_range, kernel_size=kernel_size, gaussian_kernel=gaussian
    )
    assert isinstance(value, torch.Tensor)  # a tuple only with return_full_image / return_contrast_sensitivity
    return float(value)


def frobenius_distance(a: torch.Tensor, b: torch.Tensor, relative: bool = False) -> float:
    """||a - b||_F, or divided by the mean of ||a||_F and ||b||_F when ``relative``."""
    distance = torch.linalg.matrix_norm((a - b).double())
    if relative:
        distance = distance / ((torch.linalg.matrix_norm(a.double()) + torch.linalg.matrix_norm(b.double())) / 2)
    return float(distance)


def spectrum(weight: torch.Tensor, top: int | None = None) -> list[float]:
    """Singular values of W, largest first (the first ``top`` of them)."""
    return torch.linalg.svdvals(weight.detach().double())[:top].tolist()


def compare_transforms(weights: dict[str, torch.Tensor], n_random: int = 3, seed: int = 0) -> dict:
    """Pairwise SSIM and relative Frobenius distance between the named Ts, and between random Ts of the same shape
    and mean Frobenius norm (the reference for "no more alike than chance")."""
    names = list(weights)
    shape = next(iter(weights.values())).shape
    norm = sum(float(torch.linalg.matrix_norm(w.double())) for w in weights.values()) / len(weights)
    generator = torch.Generator().manual_seed(seed)
    randoms = []
    for _ in range(max(n_random, 2)):
        r = torch.randn(*shape, generator=generator, dtype=torch.float64)
        randoms.append(r * norm / torch.linalg.matrix_norm(r))
    pairs = {f"{a} vs {b}": _similarity(weights[a], weights[b]) for a, b in combinations(names, 2)}
    random_pairs = [_similarity(a, b) for a, b in combinations(randoms, 2)]
    return {
        "pairs": pairs,
        "random": {k: sum(p[k] for p in random_pairs) / len(random_pairs) for k in random_pairs[0]},
        "spectra": {name: spectrum(w, top=10) for name, w in weights.items()} | {"random": spectrum(randoms[0], 10)},
    }


def _similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    return {
        "ssim": ssim(a, b),
        "ssim_clipped": ssim_clipped(a, b),
        "correlation": correlation(a, b),
        "frobenius_relative": frobenius_distance(a, b, relative=True),
    }


def ssim_clipped(a: torch.Tensor, b: torch.Tensor, quantile: float = 0.005) -> float:
    """SSIM after clipping both matrices to their joint [quantile, 1 - quantile] range.

    Transforms between LLMs carry a few entries tens of standard deviations out (the models' outlier dimensions).
    Plain SSIM takes its constants from the full value range, which such outliers inflate until any two matrices
    of small entries score near 1; clipping first makes the score reflect the bulk of the entries.
    """
    joint = torch.cat([a.detach().flatten(), b.detach().flatten()]).double()
    sample = joint[:: max(1, joint.numel() // 1_000_000)]  # torch.quantile takes at most 16M values
    low, high = torch.quantile(sample, torch.tensor([quantile, 1 - quantile], dtype=torch.float64))
    return ssim(a.double().clamp(low, high), b.double().clamp(low, high))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the two matrices' entries."""
    return float(torch.corrcoef(torch.stack([a.detach().double().flatten(), b.detach().double().flatten()]))[0, 1])


def pca_2d(points: torch.Tensor) -> torch.Tensor:
    """Projection of the rows of ``points`` [n, d] on their first two principal components: [n, 2]."""
    centred = points.double() - points.double().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:2].T).float()
