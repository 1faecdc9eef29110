"""CorpusSettings: a corpus to fit T on, and what a fit does with it (the ``data.corpus`` section of a config)."""

from __future__ import annotations

from dataclasses import dataclass

from lcross.corpus.passages import CorpusSource
from lcross.errors import LCrossInputError
from lcross.setting_checks import document_fields, whole_number

# The corpus's share of the loss when nothing says otherwise (also what LCross assumes without a corpus).
DEFAULT_CORPUS_WEIGHT = 0.5


@document_fields
@dataclass(frozen=True)
class CorpusSettings(CorpusSource):
    """Where the text comes from and how it is cut (``CorpusSource``'s fields), plus how many of its aligned token
    pairs become rows, in which cache shards and batches, and how much they weigh against the deltas.

    Set in a config as ``data: {corpus: {path: data/corpus, max_rows: 5000}}``, on the command line as
    ``--data.corpus.path data/corpus --data.corpus.max_rows 5000``, in Python as
    ``PairedDeltas(..., fit_on="corpus", corpus=CorpusSettings("data/corpus", max_rows=5000))``.
    """

    max_rows: int = 100_000
    """Cap on rows (aligned token pairs) over the whole corpus; reading stops once it is reached."""

    shard_rows: int = 16_384
    """About this many rows per cached corpus shard (a shard holds whole passages; one is in memory at a time)."""

    skip_first: int = 2
    """Aligned token pairs dropped at the start of every passage: the first tokens' states carry attention-sink
    activations hundreds of times larger than the rest, which would dominate a least-squares fit."""

    batch_size: int = 4096
    """Corpus rows per gradient step (0: one shard per step)."""

    weight: float = DEFAULT_CORPUS_WEIGHT
    """With ``data.fit_on=both``, the corpus's share of the loss (each source's loss is its mean over its own rows, so
    the weight does not depend on how many rows each has); the deltas get ``1 - weight``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        whole_number(self.max_rows, "data.corpus.max_rows", minimum=1)
        whole_number(self.shard_rows, "data.corpus.shard_rows", minimum=1)
        whole_number(self.skip_first, "data.corpus.skip_first", minimum=0)
        whole_number(self.batch_size, "data.corpus.batch_size", minimum=0)
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < 1:
            raise LCrossInputError(
                f"weight is {weight!r}",
                where="data.corpus.weight",
                fix="use a number strictly between 0 and 1 (data.fit_on corpus or deltas for one source alone)",
            )
