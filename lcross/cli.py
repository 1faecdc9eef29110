"""The command line: a LightningCLI over LCross and PairedDeltas, with the data's hidden sizes linked into the model.

python main.py fit --config configs/tiny.yaml
python main.py fit --config configs/demo.yaml --print_config
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from lcross.datamodule import PairedDeltas
from lcross.system import LCross


class LCrossCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The widths of T come from the models' configs, read by the data module before any weights load.
        parser.link_arguments("data.d_source", "model.d_source", apply_on="instantiate")
        parser.link_arguments("data.d_target", "model.d_target", apply_on="instantiate")


def main(args: list[str] | None = None) -> LCrossCLI:
    return LCrossCLI(
        LCross,
        PairedDeltas,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
