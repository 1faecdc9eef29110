"""ExportTransform: when fitting ends, write T as a plain export (safetensors + JSON card) in the run's folder.

The card carries the newest results of every callback that keeps an evaluation history (``lcross.results.
EvaluationHistory``: a ``history`` and a ``card_section``; the efficacy callbacks are two). They are found by that
shape, not by class, so this callback imports none of them and works with any order of callbacks: evaluations run at
validation epoch ends, all before fitting ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from lcross.errors import LCrossInputError
from lcross.files import safe_name
from lcross.results import latest_results
from lcross.training.tensorboard import hparams_view


class ExportTransform(L.Callback):
    """Writes the trained T (weights and card) into the run folder when fitting ends.

    Args:
        dirname: folder name inside the run's log directory.
    """

    def __init__(self, dirname: str = "transform"):
        if safe_name(dirname, "ExportTransform.dirname") != dirname:
            raise LCrossInputError(
                f"dirname {dirname!r} is not one plain folder name (it would be written outside the run folder)",
                where="ExportTransform.dirname",
                fix="use e.g. transform",
            )
        self.dirname = dirname
        self.path: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        card: dict[str, Any] = pl_module.card()
        # several callbacks of a kind (e.g. one judge per concept) merge their latest results
        card.update(latest_results(trainer.callbacks))
        root = Path(trainer.log_dir or trainer.default_root_dir)
        self.path = pl_module.to_transform(card=card).save_pretrained(root / self.dirname)
        if trainer.logger is not None:  # the HPARAMS tab: settings next to the final figures, to compare runs
            settings, metrics = hparams_view(card)
            trainer.logger.log_hyperparams(settings, metrics)
