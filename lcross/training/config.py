"""Reading a fit's config file outside the CLI: its data module, built the way LightningCLI builds it."""

from __future__ import annotations

from pathlib import Path

import yaml


def data_module_from_config(config: str):
    """The PairedDeltas of a LightningCLI config file, built the way the CLI builds it."""
    from jsonargparse import ArgumentParser

    from lcross.training.datamodule import PairedDeltas
    from lcross.training.moved_settings import refuse_moved_settings

    parser = ArgumentParser()
    parser.add_class_arguments(PairedDeltas, "data")
    data = yaml.safe_load(Path(config).read_text())["data"]
    refuse_moved_settings(data, where=config)  # named, where the parser would only say the key is not expected
    namespace = parser.parse_object({"data": data})
    return parser.instantiate(namespace).data
