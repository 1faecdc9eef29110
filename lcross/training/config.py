"""Reading a fit's config file outside the CLI: its data module, built the way LightningCLI builds it."""

from __future__ import annotations

from pathlib import Path

import yaml


def data_module_from_config(config: str, own_folds: bool = False):
    """The PairedDeltas of a LightningCLI config file, built the way the CLI builds it. A run's own config.yaml saved
    before the data settings were grouped is read with them moved into their groups; any other config with an old
    flat name is refused naming the new place (``lcross.training.moved_settings``). ``own_folds``: the caller
    chooses its own held-out concepts (cross-validation), so a config without ``val_concepts`` is read with a
    placeholder one (the data module's own split is then never used)."""
    from jsonargparse import ArgumentParser

    from lcross.training.datamodule import PairedDeltas
    from lcross.training.moved_settings import SAVED_CONFIG_HEADER, refuse_moved_settings, upgrade_saved_data_section

    parser = ArgumentParser()
    parser.add_class_arguments(PairedDeltas, "data")
    text = Path(config).read_text()
    data = yaml.safe_load(text)["data"]
    if text.startswith(SAVED_CONFIG_HEADER):  # a run's own config.yaml, perhaps saved before the settings groups
        data = upgrade_saved_data_section(data)
    refuse_moved_settings(data, where=config)  # named, where the parser would only say the key is not expected
    concepts = data.get("concepts") if isinstance(data, dict) else None
    if own_folds and isinstance(concepts, dict) and len(concepts) > 1 and not data.get("val_concepts"):
        test = data.get("test_concepts") or []
        data = {**data, "val_concepts": [next(c for c in reversed(list(concepts)) if c not in test)]}
    namespace = parser.parse_object({"data": data})
    return parser.instantiate(namespace).data
