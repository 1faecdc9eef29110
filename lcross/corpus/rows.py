"""CorpusRows: the corpus's paired token-state rows streamed shard by shard, for gradient descent on T.

Only one shard is in memory at a time. Each pass visits the shards in a new seeded order and each shard's rows in a
new seeded order, so batches mix passages without ever holding the whole corpus. The order of a pass depends on the
seed, the epoch and how many times the stream restarted within that epoch (a ``CombinedLoader`` cycles the shorter
source) alone: a fit resumed from a checkpoint at epoch k sees the batches an uninterrupted fit would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset

from lcross.corpus.states import CorpusStates


class CorpusRows(IterableDataset):
    """Yields (source rows [b, n_layers, d_source], target rows [b, n_layers, d_target], scale) batches.

    ``scale`` is the batch's row count over the mean batch size: a loss that is a mean over the batch's rows, times
    ``scale``, weighs every row alike over a pass, whatever the shard sizes and the short last batch of each shard, so
    that gradient descent and the closed form minimise the same objective.

    Args:
        states: the corpus's shards (extracted before the first pass).
        batch_size: rows per batch; 0 means one batch per shard.
        seed: seeds the order of every pass (the k-th restart within epoch e uses seed + e + 1_000_003 k).
        epoch: returns the current epoch (the trainer's, so that a resumed fit continues the sequence of orders);
            None: every pass is a new epoch.
    """

    def __init__(self, states: CorpusStates, batch_size: int, seed: int = 0, epoch: Callable[[], int] | None = None):
        super().__init__()
        self.states, self.batch_size, self.seed, self.epoch = states, batch_size, seed, epoch
        self.passes = 0
        self._epoch, self._restarts = -1, 0

    def _sizes(self) -> list[int]:
        return [s.rows for s in self.states.plan().shards]

    def __len__(self) -> int:
        if not self.batch_size:
            return len(self._sizes())
        return sum(-(-rows // self.batch_size) for rows in self._sizes())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        epoch = self.epoch() if self.epoch is not None else self.passes
        self._restarts = self._restarts + 1 if epoch == self._epoch else 0
        self._epoch = epoch
        generator = torch.Generator().manual_seed(self.seed + epoch + 1_000_003 * self._restarts)
        self.passes += 1
        shards = self.states.plan().shards
        mean_rows = sum(self._sizes()) / len(self)
        for index in torch.randperm(len(shards), generator=generator).tolist():
            xs, xt = self.states.load_shard(shards[index])
            order = torch.randperm(xs.shape[0], generator=generator)
            size = self.batch_size or xs.shape[0]
            for start in range(0, xs.shape[0], size):
                rows = order[start : start + size]
                yield xs[rows], xt[rows], torch.tensor(len(rows) / mean_rows)
