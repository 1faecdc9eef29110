"""Closed-form linear maps from sufficient statistics accumulated in one pass over rows streamed from disk.

``GramStats`` holds float64 sums (row count, sums, X^T X, X^T Y, per-dimension sum of y^2) for paired rows, so
fitting on millions of token states needs memory O(d^2), not O(rows * d). ``solve`` turns one or more weighted sets
of statistics into the same W (and b) that ``closed_form.fit_map`` computes from the rows, and ``accumulate`` runs
the pass over lazily loaded chunks with an optional checkpoint that a rerun after a kill resumes from.

Numerical caveat: the normal equations square the condition number of the data. ``ridge`` with alpha > 0 is
unaffected in practice, but ``lstsq`` from the Gram matrix can only tell singular values of X down to about
sqrt(d * eps) ~ 4e-7 of the largest apart from zero (``gelsd`` on the rows resolves about d * eps ~ 1e-13), and
centring by subtracting n * mean^2 from raw sums loses about log10(mean^2 / variance) of float64's 16 digits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.transform.closed_form import FitMethod

# Rows converted to float64 at a time: 8192 rows of width 4096 are 256 MiB in float64, and a 100k-row shard never
# gets a full float64 copy, while each matmul is still large enough to run at BLAS speed.
CHUNK_ROWS = 8192
_FORMAT = "lcross.gram_stats"
_FORMAT_VERSION = "1"
_KEYS = ("n", "sum_x", "sum_y", "xtx", "xty", "yy")


@dataclass
class GramStats:
    """Float64 sums over paired rows (x [d_source], y [d_target]), each row counted with its weight."""

    n: float
    """The sum of the row weights (the row count when every weight is 1)."""
    sum_x: torch.Tensor
    """[d_source], the weighted sum of x."""
    sum_y: torch.Tensor
    """[d_target], the weighted sum of y."""
    xtx: torch.Tensor
    """[d_source, d_source], the weighted sum of x^T x."""
    xty: torch.Tensor
    """[d_source, d_target], the weighted sum of x^T y."""
    yy: torch.Tensor
    """[d_target], the weighted sum of y^2 per target dimension (for residuals and R^2)."""

    @classmethod
    def empty(cls, d_source: int, d_target: int) -> GramStats:
        """Statistics of no rows."""
        if d_source < 1 or d_target < 1:
            raise LCrossInputError(
                f"widths must be positive; got d_source={d_source}, d_target={d_target}",
                fix="pass the hidden sizes of the two models",
            )
        z = torch.float64
        return cls(
            0.0,
            torch.zeros(d_source, dtype=z),
            torch.zeros(d_target, dtype=z),
            torch.zeros(d_source, d_source, dtype=z),
            torch.zeros(d_source, d_target, dtype=z),
            torch.zeros(d_target, dtype=z),
        )

    @property
    def d_source(self) -> int:
        return self.sum_x.shape[0]

    @property
    def d_target(self) -> int:
        return self.sum_y.shape[0]

    def update(self, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0, *, where: str | None = None) -> None:
        """Adds the rows (x[i], y[i]), each with ``weight``, converting ``CHUNK_ROWS`` rows at a time to float64.

        The rows are summed into temporaries first, so rows that are rejected (NaN or Inf) leave the statistics as
        they were.

        Args:
            x: [n, d_source], any float dtype, on any device.
            y: [n, d_target], row i paired with x row i.
            weight: the weight of every row, finite and >= 0.
            where: names the rows in an error (a chunk id, a file).
        """
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise LCrossInputError(
                f"paired rows must be [n, d_source] and [n, d_target] with the same n; got {tuple(x.shape)} and "
                f"{tuple(y.shape)}",
                where=where,
                fix="load the source and target rows of the same pairs",
            )
        if x.shape[1] != self.d_source or y.shape[1] != self.d_target:
            raise LCrossInputError(
                f"rows of widths ({x.shape[1]}, {y.shape[1]}) do not fit statistics of widths "
                f"({self.d_source}, {self.d_target})",
                where=where,
                fix="accumulate each (source layer, target layer) pair into its own GramStats",
            )
        _check_weight(weight, where)
        part = GramStats.empty(self.d_source, self.d_target)
        for start in range(0, x.shape[0], CHUNK_ROWS):
            xc = x[start : start + CHUNK_ROWS].detach().to("cpu", torch.float64)
            yc = y[start : start + CHUNK_ROWS].detach().to("cpu", torch.float64)
            part.sum_x += xc.sum(0)
            part.sum_y += yc.sum(0)
            part.xtx.addmm_(xc.T, xc)
            part.xty.addmm_(xc.T, yc)
            part.yy += (yc * yc).sum(0)
            del xc, yc
        # A NaN or Inf anywhere in the rows reaches these sums (float32 values cannot overflow a float64 sum), so
        # checking them is a free finiteness check of the data.
        if not (torch.isfinite(part.sum_x).all() and torch.isfinite(part.sum_y).all()):
            raise LCrossInputError(
                "the rows contain NaN or Inf",
                where=where,
                fix="check the extracted deltas (a float16 model can overflow)",
            )
        self.n += weight * x.shape[0]
        for mine, new in zip(self._tensors(), part._tensors()):
            mine.add_(new, alpha=weight)

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.sum_x, self.sum_y, self.xtx, self.xty, self.yy)

    def __add__(self, other: GramStats) -> GramStats:
        """The statistics of both row sets together."""
        if not isinstance(other, GramStats):
            return NotImplemented
        _check_same_widths([self, other])
        return GramStats(
            self.n + other.n,
            self.sum_x + other.sum_x,
            self.sum_y + other.sum_y,
            self.xtx + other.xtx,
            self.xty + other.xty,
            self.yy + other.yy,
        )

    def scaled(self, w: float) -> GramStats:
        """The statistics with every row's weight multiplied by ``w`` (finite, >= 0)."""
        _check_weight(w, None)
        return GramStats(self.n * w, self.sum_x * w, self.sum_y * w, self.xtx * w, self.xty * w, self.yy * w)

    def mean_x(self) -> torch.Tensor:
        """[d_source], the weighted mean of x (refuses statistics of no rows)."""
        _check_has_rows(self)
        return self.sum_x / self.n

    def mean_y(self) -> torch.Tensor:
        """[d_target], the weighted mean of y (refuses statistics of no rows)."""
        _check_has_rows(self)
        return self.sum_y / self.n

    def centred(self) -> GramStats:
        """The statistics of the rows minus their (weighted) means: what fitting with an intercept solves on.

        Computed as X^T X - n mean_x mean_x^T etc., which cancels digits when the means are large against the
        spread (see the module docstring).
        """
        mx, my = self.mean_x(), self.mean_y()
        return GramStats(
            self.n,
            torch.zeros_like(self.sum_x),
            torch.zeros_like(self.sum_y),
            self.xtx - self.n * torch.outer(mx, mx),
            self.xty - self.n * torch.outer(mx, my),
            self.yy - self.n * my * my,
        )

    def residual_sum(self, W: torch.Tensor, b: torch.Tensor | None = None) -> float:
        """The weighted sum over rows of ||x W + b - y||^2, from the statistics alone.

        Expands to tr(W^T XtX W) - 2 tr(W^T XtY) + sum(yy) + 2 b.(sum_x W) - 2 b.sum_y + n ||b||^2; when the residual
        is tiny against sum(yy), the subtraction leaves about eps * sum(yy) of absolute error.

        Args:
            W: [d_source, d_target].
            b: [d_target] or None.
        """
        w, bias = self._check_map(W, b)
        total = (w * (self.xtx @ w)).sum() - 2 * (w * self.xty).sum() + self.yy.sum()
        if bias is not None:
            total = total + 2 * bias @ (self.sum_x @ w) - 2 * bias @ self.sum_y + self.n * bias @ bias
        return float(total.clamp_min(0.0))

    def r2(self, W: torch.Tensor, b: torch.Tensor | None = None) -> float:
        """Variance-weighted R^2 of y ~ x W + b: 1 - residual_sum / sum over target dims of the (weighted) sum of
        squares about the mean, as torchmetrics ``R2Score(multioutput="variance_weighted")`` defines it."""
        total = float((self.yy - self.n * self.mean_y() ** 2).sum())
        if total <= 0.0:
            raise LCrossInputError(
                "the targets have no variance, so R^2 is undefined", fix="score on rows whose targets vary"
            )
        return 1.0 - self.residual_sum(W, b) / total

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The statistics as float64 tensors (``n`` as a one-element tensor)."""
        return {
            "n": torch.tensor([self.n], dtype=torch.float64),
            "sum_x": self.sum_x.clone(),
            "sum_y": self.sum_y.clone(),
            "xtx": self.xtx.clone(),
            "xty": self.xty.clone(),
            "yy": self.yy.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], where: str | None = None) -> GramStats:
        """The inverse of ``state_dict``; refuses missing keys, inconsistent shapes and non-finite values."""
        missing = [k for k in _KEYS if k not in state]
        if missing:
            raise LCrossInputError(
                f"the statistics lack {missing}", where=where, fix="save them with GramStats.state_dict"
            )
        t = {k: state[k].detach().to("cpu", torch.float64) for k in _KEYS}
        ds = t["sum_x"].shape[0] if t["sum_x"].ndim == 1 else 0
        dt = t["sum_y"].shape[0] if t["sum_y"].ndim == 1 else 0
        expected = {"n": (1,), "sum_x": (ds,), "sum_y": (dt,), "xtx": (ds, ds), "xty": (ds, dt), "yy": (dt,)}
        bad = {k: tuple(t[k].shape) for k in _KEYS if tuple(t[k].shape) != expected[k]}
        if bad or min(ds, dt) < 1:
            raise LCrossInputError(
                f"the statistics have inconsistent shapes {bad or {k: tuple(v.shape) for k, v in t.items()}}",
                where=where,
                fix="save them with GramStats.state_dict",
            )
        stats = cls(float(t["n"][0]), t["sum_x"], t["sum_y"], t["xtx"], t["xty"], t["yy"])
        _check_finite(stats, where)
        return stats

    def save(self, path: str | Path, consumed: Sequence[str] = ()) -> Path:
        """Writes the statistics and the ids of the chunks they hold to ``path`` (safetensors), atomically.

        The metadata holds the format, the widths, the consumed ids (JSON) and a SHA-256 of all of it and of the
        tensors, so a damaged file is refused by ``load`` rather than read.
        """
        path = Path(path)
        tensors = self.state_dict()
        metadata = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "d_source": str(self.d_source),
            "d_target": str(self.d_target),
            "consumed": json.dumps(list(consumed)),
        }
        metadata["checksum"] = _checksum(tensors, metadata)
        try:
            with atomic_path(path) as tmp:
                save_file(tensors, tmp, metadata=metadata)
        except OSError as err:
            raise LCrossInputError(
                f"cannot write the statistics ({err})", where=str(path), fix="make the folder writable"
            ) from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[GramStats, list[str]]:
        """Reads what ``save`` wrote: (stats, consumed chunk ids).

        Raises ``FileNotFoundError`` if there is no file, and ``LCrossInputError`` for a file that does not parse
        (torn, truncated, not safetensors), is of another format, or whose checksum does not match: a damaged file is
        never returned as valid.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(path)
        fix = f"delete {path} to start over (it was damaged or written by something else)"
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k).clone() for k in handle.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise LCrossInputError(f"cannot read the statistics ({err})", where=str(path), fix=fix) from None
        if metadata.get("format") != _FORMAT or metadata.get("format_version") != _FORMAT_VERSION:
            raise LCrossInputError(
                f"not a GramStats file of version {_FORMAT_VERSION} (format {metadata.get('format')!r}, version "
                f"{metadata.get('format_version')!r})",
                where=str(path),
                fix=fix,
            )
        stored = metadata.pop("checksum", None)
        if set(tensors) != set(_KEYS) or stored != _checksum(tensors, metadata):
            raise LCrossInputError("the statistics fail their checksum", where=str(path), fix=fix)
        stats = cls.from_state_dict(tensors, where=str(path))
        consumed = json.loads(metadata["consumed"])
        if (stats.d_source, stats.d_target) != (int(metadata["d_source"]), int(metadata["d_target"])):
            raise LCrossInputError("the widths in the metadata do not match the tensors", where=str(path), fix=fix)
        return stats, [str(c) for c in consumed]

    def _check_map(self, W: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if tuple(W.shape) != (self.d_source, self.d_target) or (b is not None and tuple(b.shape) != (self.d_target,)):
            raise LCrossInputError(
                f"a map of shapes W {tuple(W.shape)}, b {None if b is None else tuple(b.shape)} does not fit "
                f"statistics of widths ({self.d_source}, {self.d_target})",
                fix="score the map on statistics of the layer pair it was fitted on",
            )
        w = W.detach().to("cpu", torch.float64)
        return w, None if b is None else b.detach().to("cpu", torch.float64)


def solve(
    parts: Sequence[tuple[GramStats, float, bool]],
    method: FitMethod = "lstsq",
    alpha: float = 0.0,
    *,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (W, b) minimising sum_p w_p * sum_rows ||x W + [affine_p] b - y||^2 + alpha ||W||_F^2.

    Args:
        parts: (stats, weight, affine) triples. At most one part is affine: the intercept b belongs to it,
            b = mean_y - mean_x W over its rows, and it enters the normal equations centred on its own means. The
            other parts (differences of states, say) have no intercept and enter as they are.
        method: ``ridge``, (A + alpha I) W = B with A, B the weighted (centred where affine) X^T X and X^T Y;
            ``lstsq`` (alpha must be 0), the minimum-norm least-squares W = pinv(A) B, which is what
            ``torch.linalg.lstsq(..., driver="gelsd")`` gives on the rows, also when there are fewer rows than
            d_source; ``procrustes``, the orthogonal W maximising tr(W^T B), with both widths zero-padded to the
            larger and the result cut to [d_source, d_target] as ``closed_form.fit_map`` does (alpha does not change
            it: ||W||_F is fixed for an orthogonal W).
        alpha: the ridge penalty, finite and >= 0.
        rtol: for ``lstsq``, eigenvalues of A at or below rtol * its largest count as zero; defaults to d_source *
            float64 eps (singular values of the rows below sqrt(rtol) of the largest are dropped; see the module
            docstring).
        dtype: of the returned W and b (``fit_map`` returns its input's dtype; streamed rows are float32).

    Returns:
        W [d_source, d_target] and b [d_target] (None when no part is affine).
    """
    if not parts:
        raise LCrossInputError("no statistics to solve from", fix="pass at least one (stats, weight, affine) part")
    for i, part in enumerate(parts):
        if not (isinstance(part, tuple | list) and len(part) == 3 and isinstance(part[0], GramStats)):
            raise LCrossInputError(
                f"part {i} is not a (GramStats, weight, affine) triple", fix="pass parts as (stats, weight, affine)"
            )
        _check_weight(part[1], f"part {i}")
        _check_finite(part[0], f"part {i}")
    _check_same_widths([p[0] for p in parts])
    affine = [i for i, p in enumerate(parts) if p[2]]
    if len(affine) > 1:
        raise LCrossInputError(
            f"parts {affine} are all affine; only one part may carry the intercept",
            fix="mark one part (the states) affine and the others (differences) not",
        )
    if not math.isfinite(alpha) or alpha < 0:
        raise LCrossInputError(f"alpha is {alpha}", fix="use a finite ridge penalty of 0 or more")
    if method == "lstsq" and alpha != 0:
        raise LCrossInputError(
            f"lstsq takes no penalty; got alpha={alpha}", fix="use method='ridge' for a penalty, or alpha=0"
        )
    if method not in ("lstsq", "ridge", "procrustes"):
        raise LCrossInputError(f"unknown fit method {method!r}", fix="use lstsq, ridge or procrustes")
    if sum(w * s.n for s, w, _ in parts) <= 0:
        raise LCrossInputError("the statistics hold no rows (or only rows of weight 0)", fix="accumulate rows first")
    ds, dt = parts[0][0].d_source, parts[0][0].d_target
    a = torch.zeros(ds, ds, dtype=torch.float64)
    cross = torch.zeros(ds, dt, dtype=torch.float64)
    for i, (stats, weight, is_affine) in enumerate(parts):
        if is_affine and stats.n <= 0:
            raise LCrossInputError(
                f"the affine part {i} holds no rows, so its intercept is undefined", fix="accumulate its rows first"
            )
        s = stats.centred() if is_affine else stats
        a += weight * s.xtx
        cross += weight * s.xty
    if method == "ridge":
        a += alpha * torch.eye(ds, dtype=torch.float64)
        # LU rarely fails on a Gram matrix that is singular only up to rounding; it returns noise instead.
        evals = torch.linalg.eigvalsh(a)
        if float(evals[0]) <= ds * torch.finfo(torch.float64).eps * float(evals[-1]):
            raise LCrossInputError(
                f"X^T X + alpha I is singular to float64 precision (alpha={alpha}; fewer independent rows than "
                "d_source, or a constant dimension)",
                fix="use a larger alpha, or method='lstsq' for the minimum-norm solution",
            )
        w = torch.linalg.solve(a, cross)
    elif method == "lstsq":
        evals, evecs = torch.linalg.eigh((a + a.T) / 2)
        tol = (ds * torch.finfo(torch.float64).eps if rtol is None else rtol) * max(float(evals.max()), 0.0)
        keep = evals > tol
        v = evecs[:, keep]
        w = v @ ((v.T @ cross) / evals[keep].unsqueeze(1))
    else:
        width = max(ds, dt)
        padded = torch.nn.functional.pad(cross, (0, width - dt, 0, width - ds))
        u, _, vh = torch.linalg.svd(padded)
        w = (u @ vh)[:ds, :dt]
    b = None
    if affine:
        stats = parts[affine[0]][0]
        b = (stats.mean_y() - stats.mean_x() @ w).to(dtype)
    return w.to(dtype), b


def accumulate(
    chunks: Iterable[tuple[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]],
    d_source: int,
    d_target: int,
    checkpoint: str | Path | None = None,
) -> GramStats:
    """One pass over lazily loaded chunks of paired rows, returning their statistics.

    With ``checkpoint``, the statistics and the ids of the chunks they hold are saved atomically after every chunk;
    a rerun (after a kill) loads them and skips those chunks without calling their loaders, so it ends with the same
    statistics as a pass that was never interrupted. The checkpoint stays after a complete pass (a rerun then loads
    no chunk at all); delete it to start over.

    Args:
        chunks: (id, loader) pairs; the loader returns (x [n, d_source], y [n, d_target]). Ids must be unique.
        d_source: the source width.
        d_target: the target width.
        checkpoint: a file to save progress to and resume from; refused if it holds other widths, chunks this pass
            does not list, or does not read as valid (torn, damaged).
    """
    listed = list(chunks)
    ids = [str(cid) for cid, _ in listed]
    duplicates = sorted({c for c in ids if ids.count(c) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise LCrossInputError(
            f"chunk ids {duplicates[:5]} are listed more than once", fix="give every chunk a unique id (its file name)"
        )
    stats = GramStats.empty(d_source, d_target)
    consumed: list[str] = []
    if checkpoint is not None and Path(checkpoint).exists():
        stats, consumed = GramStats.load(checkpoint)
        if (stats.d_source, stats.d_target) != (d_source, d_target):
            raise LCrossInputError(
                f"the checkpoint holds statistics of widths ({stats.d_source}, {stats.d_target}), not "
                f"({d_source}, {d_target})",
                where=str(checkpoint),
                fix="use another checkpoint file for each layer pair, or delete this one",
            )
        unknown = sorted(set(consumed) - set(ids))
        if unknown:
            raise LCrossInputError(
                f"the checkpoint holds chunks this pass does not list ({unknown[:5]})",
                where=str(checkpoint),
                fix="resume with the same chunk list, or delete the checkpoint to start over",
            )
    done = set(consumed)
    for cid, loader in zip(ids, (loader for _, loader in listed)):
        if cid in done:
            continue
        x, y = loader()
        stats.update(x, y, where=f"chunk {cid!r}")
        del x, y
        consumed.append(cid)
        done.add(cid)
        if checkpoint is not None:
            stats.save(checkpoint, consumed)
    return stats


def _checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_weight(weight: float, where: str | None) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        raise LCrossInputError(f"weight is {weight}", where=where, fix="use a finite weight of 0 or more")


def _check_finite(stats: GramStats, where: str | None) -> None:
    if not math.isfinite(stats.n) or stats.n < 0 or not all(torch.isfinite(t).all() for t in stats._tensors()):
        raise LCrossInputError(
            f"the statistics are not finite (or count {stats.n} rows)",
            where=where,
            fix="accumulate them again from finite rows",
        )


def _check_has_rows(stats: GramStats) -> None:
    if stats.n <= 0:
        raise LCrossInputError("the statistics hold no rows, so their means are undefined", fix="accumulate rows first")


def _check_same_widths(all_stats: Sequence[GramStats]) -> None:
    widths = {(s.d_source, s.d_target) for s in all_stats}
    if len(widths) > 1:
        raise LCrossInputError(
            f"statistics of different widths {sorted(widths)} cannot be combined",
            fix="combine statistics of the same (source layer, target layer) pair",
        )
