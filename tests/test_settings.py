"""The data section's settings groups: ``data.extraction`` (ExtractionSettings) and ``data.corpus`` (CorpusSettings),
their checks, their place on the command line and in ``--help``, and the error that names the new place of an old flat
name (Python keyword, config file, command line)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from lcross import CorpusSettings, ExtractionSettings, LCrossInputError, ModelSpec, PairedDeltas
from lcross.cli.main import console
from lcross.extraction.cache import cache_key
from lcross.training.moved_settings import MOVED_SETTINGS, moved_setting_named_in

from .conftest import DEMO_DATA, ROOT

TINY = {
    "source": ModelSpec("tiny-llama", tiny={"hidden_size": 24, "seed": 1}),
    "target": ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 2}),
    "source_layer": 1,
    "target_layer": 2,
    "concepts": {"size": str(DEMO_DATA / "size"), "age": str(DEMO_DATA / "age")},
    "val_concepts": ["age"],
    "max_train_pairs": 10,
}


@pytest.mark.parametrize(
    ("field", "value", "fix"),
    [
        ("batch_size", 0, "whole number >= 1, or null"),
        ("batch_size", 2.0, "whole number >= 1, or null"),
        ("max_batch_tokens", -5, "whole number >= 1, or null"),
        ("max_batch_tokens", True, "whole number >= 1, or null"),
        ("shard_size", None, "whole number >= 1"),
        ("shard_size", "256", "whole number >= 1"),
        ("trainer", ["gpu"], "Trainer arguments by name"),
        ("trainer", {1: "gpu"}, "Trainer arguments by name"),
    ],
)
def test_bad_extraction_settings_are_named(field, value, fix):
    with pytest.raises(LCrossInputError) as err:
        ExtractionSettings(**{field: value})
    assert str(err.value).startswith(f"data.extraction.{field}: {field} is {value!r}")
    assert fix in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "fix"),
    [
        ("max_rows", 0, "whole number >= 1"),
        ("shard_rows", 1.5, "whole number >= 1"),
        ("skip_first", -1, "whole number >= 0"),
        ("batch_size", -1, "whole number >= 0"),
        ("batch_size", None, "whole number >= 0"),
        ("weight", 0, "strictly between 0 and 1"),
        ("weight", 1.0, "strictly between 0 and 1"),
        ("weight", math.nan, "strictly between 0 and 1"),
        ("weight", True, "strictly between 0 and 1"),
        ("passage_chars", 0, "positive number of characters"),
        ("text_field", " ", "non-empty text_field"),
    ],
)
def test_bad_corpus_settings_are_named(field, value, fix):
    with pytest.raises(LCrossInputError) as err:
        CorpusSettings(**{"path": "data/corpus", field: value})
    assert str(err.value).startswith(f"data.corpus.{field}: {field} is {value!r}")
    assert fix in str(err.value)


def test_good_settings_keep_their_values_and_edges_are_allowed():
    extraction = ExtractionSettings(batch_size=1, max_batch_tokens=1, shard_size=1, trainer={"devices": 2})
    assert (extraction.batch_size, extraction.max_batch_tokens, extraction.shard_size) == (1, 1, 1)
    assert extraction.trainer == {"devices": 2}
    corpus = CorpusSettings("data/corpus", max_rows=1, shard_rows=1, skip_first=0, batch_size=0, weight=0.001)
    assert (corpus.path, corpus.max_rows, corpus.skip_first, corpus.batch_size, corpus.weight) == (
        "data/corpus",
        1,
        0,
        0,
        0.001,
    )
    assert corpus.passage_chars == 1200  # CorpusSource's fields and defaults come along


def test_a_dict_where_a_group_belongs_is_named_with_the_class_to_build(tmp_path):
    with pytest.raises(LCrossInputError, match=r"data.extraction: extraction is a dict, not ExtractionSettings"):
        PairedDeltas(**TINY, cache_dir=str(tmp_path), extraction={"shard_size": 3})  # type: ignore[arg-type]
    from lcross.corpus.passages import CorpusSource

    with pytest.raises(LCrossInputError, match=r"data.corpus: corpus is a CorpusSource, not CorpusSettings"):
        PairedDeltas(**TINY, cache_dir=str(tmp_path), fit_on="corpus", corpus=CorpusSource("data/corpus"))  # type: ignore[arg-type]


@pytest.mark.parametrize("old", sorted(MOVED_SETTINGS))
def test_an_old_keyword_in_python_names_the_new_place(tmp_path, old):
    new = MOVED_SETTINGS[old]
    with pytest.raises(LCrossInputError) as err:
        PairedDeltas(**TINY, cache_dir=str(tmp_path), **{old: 1})
    message = str(err.value)
    assert message.startswith(f"data.{old} is now data.{new} Fix:")
    group, field = new.split(".")
    kind = {"extraction": "ExtractionSettings", "corpus": "CorpusSettings"}[group]
    assert f"--data.{new}" in message and f"{group}={kind}(..., {field}=...)" in message
    assert not (tmp_path / "deltas").exists()


def test_an_unknown_keyword_is_still_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="no_such_setting"):
        PairedDeltas(**TINY, cache_dir=str(tmp_path), no_such_setting=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("old", sorted(MOVED_SETTINGS))
def test_an_old_name_on_the_command_line_exits_2_naming_the_new_place(tmp_path, monkeypatch, capsys, old):
    monkeypatch.chdir(ROOT)
    logs = tmp_path / "logs"
    argv = ["fit", "--config", "configs/tiny.yaml", f"--trainer.logger.init_args.save_dir={logs}"]
    assert console([*argv, f"--data.{old}", "{devices: 2}" if old == "extraction_trainer" else "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: data.{old} is now data.{MOVED_SETTINGS[old]} Fix:"), err
    assert "usage:" not in err and "Traceback" not in err
    assert not logs.exists()  # no run folder claimed: the parser refuses it before anything is built


@pytest.mark.parametrize(
    ("old", "value"),
    [("shard_size", "64"), ("extraction_trainer", "{accelerator: cpu, devices: 2}"), ("corpus_weight", "0.3")],
)
def test_an_old_name_in_a_config_file_exits_2_naming_the_new_place(tmp_path, monkeypatch, capsys, old, value):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "old.yaml"
    config.write_text(f"data:\n  {old}: {value}\n")
    logs = tmp_path / "logs"
    argv = ["fit", "--config", "configs/tiny.yaml", "--config", str(config)]
    assert console([*argv, f"--trainer.logger.init_args.save_dir={logs}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: data.{old} is now data.{MOVED_SETTINGS[old]} Fix:"), err
    assert not logs.exists()
    # lcross crossval reads a fit config without the CLI: the same named error, with the file
    from lcross.training.config import data_module_from_config

    with pytest.raises(LCrossInputError, match=rf"{config}: data.{old} is now data.{MOVED_SETTINGS[old]}"):
        data_module_from_config(str(config))


def test_only_old_names_are_taken_for_moved_settings():
    assert moved_setting_named_in("unrecognized arguments: --data.shard_size 8") == "shard_size"
    assert moved_setting_named_in("Group 'data' does not accept option 'corpus_weight'") == "corpus_weight"
    # the new names, which end the same, and other options are left to the parser's own message
    assert moved_setting_named_in('Parser key "data.extraction.shard_size": Expected a <class int>') is None
    assert moved_setting_named_in("unrecognized arguments: --data.corpus.batch_size_x 3") is None
    assert moved_setting_named_in("unrecognized arguments: --data.shard_sizes 3") is None


def _cli(*args: str):
    from lcross.cli.fit import LCrossCLI
    from lcross.training.datamodule import PairedDeltas as Data
    from lcross.training.module import LCross

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        return LCrossCLI(LCross, Data, args=["--config", "configs/tiny.yaml", *args], run=False)


def test_command_line_overrides_of_nested_fields_reach_the_objects(tmp_path):
    cli = _cli(
        f"--data.cache_dir={tmp_path}",
        "--data.extraction.max_batch_tokens=2048",
        "--data.extraction.shard_size=7",
        "--data.fit_on=corpus",
        f"--data.corpus.path={ROOT / 'data' / 'corpus'}",
        "--data.corpus.max_rows=5000",
        "--data.corpus.skip_first=3",
        "--data.corpus.weight=0.3",
    )
    data = cli.datamodule
    assert data.store.extraction == ExtractionSettings(max_batch_tokens=2048, shard_size=7)
    assert len(data.keys("source", "size")) == math.ceil(len(data.concepts["size"].train) / 7)  # one key a shard
    assert data.corpus is not None and data.corpus.max_batch_tokens == 2048
    settings = data.corpus.settings
    assert (settings.path, settings.max_rows, settings.skip_first, settings.weight) == (
        str(ROOT / "data" / "corpus"),
        5000,
        3,
        0.3,
    )
    assert settings.shard_rows == 16_384 and settings.passage_chars == 1200  # unset fields keep their defaults
    # linked into the model by the CLI: what T is fitted on, and the corpus's weight
    assert cli.model.hparams["fit_on"] == "corpus" and cli.model.hparams["corpus_weight"] == 0.3


def test_the_cache_key_holds_setting_values_not_where_they_are_set(tmp_path):
    """A cache written before the settings were grouped must still be found: the key is the documented parts."""
    data = PairedDeltas(**TINY, cache_dir=str(tmp_path), extraction=ExtractionSettings(shard_size=4))
    concept = data.concepts["size"]
    assert len(concept.train) > 4
    for side in ("source", "target"):
        spec = TINY[side]
        expected = [
            cache_key(
                model=spec.fingerprint(),
                layer=TINY[f"{side}_layer"],
                data=concept.fingerprint(),
                chat_template=False,
                dtype=spec.dtype,
                shard=(shard, 4),
            )
            for shard in range(-(-len(concept.train) // 4))
        ]
        assert data.keys(side, "size") == expected


def test_help_shows_every_field_of_the_groups_with_its_text(capsys):
    from lcross.cli.fit import main

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(ExtractionSettings):
        assert f"--data.extraction.{field.name}" in help_text
    assert "split across processes, GPUs or nodes" in help_text  # the docstring under ExtractionSettings.trainer
    assert "--data.corpus.help" in help_text
    with pytest.raises(SystemExit):
        main(["fit", "--data.corpus.help", "CorpusSettings"])
    corpus_help = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(CorpusSettings):
        assert f"--data.corpus.{field.name}" in corpus_help
    assert "attention-sink activations" in corpus_help  # under skip_first
    assert "or a Hugging Face dataset id" in corpus_help  # under CorpusSource.path, an inherited field


OLD_RUN_DATA = """\
data:
  source:
    name: tiny-llama
    tiny: {{hidden_size: 24, seed: 1}}
  target:
    name: tiny-llama
    tiny: {{hidden_size: 32, seed: 2}}
  source_layer: 1
  target_layer: 2
  concepts:
    size: {size}
    age: {age}
  val_concepts: [age]
  max_train_pairs: 10
  extraction_batch_size: null
  extraction_max_batch_tokens: 512
  shard_size: 3
  extraction_trainer: null
  max_text_tokens: 4096
  cache_dir: {cache}
  fit_on: {fit_on}
  corpus: {corpus}
  corpus_weight: 0.5
  corpus_max_rows: 77
  corpus_shard_rows: 16384
  corpus_skip_first: 2
  corpus_batch_size: 4096
"""


@pytest.mark.parametrize("fit_on", ["deltas", "corpus"])
def test_a_runs_own_config_saved_before_the_groups_is_still_read(tmp_path, fit_on):
    """A run's config.yaml holds every setting, defaults included: lcross transfer, report and crossval read one
    written before the groups with its flat settings moved into them (a user's own config is refused instead)."""
    from lcross.training.config import data_module_from_config

    corpus = f"{{path: {ROOT / 'data' / 'corpus'}}}" if fit_on == "corpus" else "null"
    data = OLD_RUN_DATA.format(
        size=DEMO_DATA / "size", age=DEMO_DATA / "age", cache=tmp_path / "cache", fit_on=fit_on, corpus=corpus
    )
    saved = tmp_path / "config.yaml"
    saved.write_text(f"# lightning.pytorch==2.6.6\nseed_everything: 0\n{data}")
    module = data_module_from_config(str(saved))
    assert module.store.extraction == ExtractionSettings(max_batch_tokens=512, shard_size=3)
    if fit_on == "corpus":
        assert module.corpus is not None and module.corpus.settings.max_rows == 77
        assert module.corpus.settings.path == str(ROOT / "data" / "corpus")
    else:
        assert module.corpus is None  # the corpus defaults of a run without a corpus are dropped
    written = tmp_path / "mine.yaml"
    written.write_text(data)
    with pytest.raises(LCrossInputError, match="data.extraction_batch_size is now data.extraction.batch_size"):
        data_module_from_config(str(written))
