import glob
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lcross import LinearTransform, load_transform
from lcross.cli.fit import main
from lcross.training.tensorboard import literal_tag

from .conftest import ROOT

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses(config, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", config, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "data:" in printed and "source:" in printed
    assert "class_path: lcross.transform." in printed  # every config names the transform it trains
    # the printed config is a config: it parses back to itself (groups such as data.extraction included)
    (tmp_path / "printed.yaml").write_text(printed)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tmp_path / "printed.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert capsys.readouterr().out == printed
    assert "  extraction:\n    batch_size:" in printed


def test_fit_tiny_end_to_end(tiny_run):
    cli, run = tiny_run
    assert (run / "checkpoints" / "last.ckpt").exists()
    events = EventAccumulator(glob.glob(str(run / "events.out.tfevents.*"))[0])
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for key in [
        "train/loss",
        "val/loss",
        "val/r2",
        "val/cos/sentiment",
        "efficacy/sentiment/no_steering",
        "efficacy/sentiment/source_no_steering",
        "efficacy/sentiment/source_on_source/beta_+4",
        "efficacy/sentiment/transferred/beta_+4",
        "efficacy/sentiment/own_sv/beta_-4",
        "efficacy/sentiment/random_T/beta_+4",
    ]:
        assert key in scalars, key
    assert "efficacy/sentiment/beta_sweep" in events.Tags()["images"]
    assert len(events.Scalars("train/loss")) == 6  # one per epoch
    # the checkpoint and the export load back as the trained T
    transform = load_transform(run / "checkpoints" / "last.ckpt")
    exported = load_transform(run / "transform")
    assert isinstance(transform, LinearTransform) and (transform.d_source, transform.d_target) == (32, 48)
    x = torch.randn(3, 32)
    torch.testing.assert_close(transform(x), cli.model(x).detach())
    assert torch.equal(exported(x), transform(x))
    assert exported.card["source"]["name"] == "tiny-llama" and exported.card["target_layer"] == 2
    assert "efficacy" in exported.card and "val/r2" in exported.card["metrics"]


def test_generation_is_logged_judged_and_carded(tiny_run):
    _, run = tiny_run
    events = EventAccumulator(glob.glob(str(run / "events.out.tfevents.*"))[0])
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    gen = ["gen/sentiment/no_steering", "gen/sentiment/transferred/beta_+4", "gen/sentiment/source_on_source/beta_-4"]
    for key in gen:
        assert key in scalars, key
    assert "gen/sentiment/samples/text_summary" in events.Tags()["tensors"]
    card = load_transform(run / "transform").card
    generation = card["generation"]["sentiment"]
    assert generation["target"]["metric"] == "vader" and generation["target"]["n_items"] == 2
    assert {row["variant"] for row in generation["samples"]} >= {"unsteered", "transferred", "source_on_source"}
    assert all(0.0 <= row["score"] <= 1.0 for row in generation["samples"])
    # every answer is kept beside the run; the card's means are their averages
    files = sorted((run / "answers").glob("sentiment_epoch*.jsonl"))
    assert [f.name for f in files] == ["sentiment_epoch5.jsonl"]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(rows) == 2 * (1 + 3 * 2) + 2 * (1 + 1 * 2)  # 2 prompts; target: unsteered + 3 variants x 2 betas
    scores = [r["score"] for r in rows if r["variant"] == "transferred" and r["beta"] == 4.0]
    mean = generation["target"]["variants"]["transferred"]["mean"][generation["betas"].index(4.0)]
    assert len(scores) == 2 and mean == pytest.approx(sum(scores) / 2)


def test_console_script_exits_0_and_generate_subcommand(tmp_path, capsys):
    from lcross.cli.main import console

    vector = tmp_path / "v.pt"
    torch.save(torch.ones(32) * 3, vector)  # tiny-gemma3_text has width 32
    argv = ["generate", "--model", "tiny-gemma3_text", "--vector", str(vector), "--layer", "1", "--beta", "-2"]
    assert console([*argv, "--beta", "2", "--prompt", "Hello", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "=== Hello" in out and "--- unsteered: fluency " in out and "--- beta -2:" in out and "--- beta +2:" in out
    assert console(["generate", "--model", "tiny-gemma3_text", "--prompt", "Hi"]) == 2
    assert "give either --vector FILE or --run RUN --concept NAME" in capsys.readouterr().err


def test_bad_input_is_one_message_and_exit_2_unless_debug(tmp_path, monkeypatch, capsys):
    from lcross.cli.main import console
    from lcross.errors import LCrossInputError

    monkeypatch.chdir(ROOT)
    argv = ["fit", "--config", "configs/tiny.yaml", "--data.target_layer=9", f"--data.cache_dir={tmp_path}"]
    argv.append(f"--trainer.logger.init_args.save_dir={tmp_path}")
    assert console(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "layer 9" in err and "Fix:" in err and "--debug" in err
    # --debug shows the traceback and keeps the documented exit code
    assert console([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and LCrossInputError.__name__ in err and "layer 9" in err
    monkeypatch.setenv("LCROSS_DEBUG", "1")
    assert console(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_fit_shows_its_phases_and_ends_with_a_labelled_summary(tmp_path, monkeypatch, capsys):
    from lcross.cli.main import console

    monkeypatch.chdir(ROOT)
    argv = ["fit", "--config", "configs/tiny.yaml", "--trainer.max_epochs=1", f"--data.cache_dir={tmp_path / 'c'}"]
    assert console([*argv, f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}"]) == 0
    captured = capsys.readouterr()
    # not a terminal: one line when each long phase starts, one when it ends
    err = captured.err
    assert "torch threads: " in err.splitlines()[0]  # before anything loads, with why
    assert "extracting source deltas for sentiment (shard 0) at layer 1 (48 texts) ..." in err
    assert "extracting target deltas for size (shard 0) at layer 2: done in " in err
    # 6 items x (unsteered + 2 betas x (3 vectors + 39 random draws at the last epoch))
    assert "A/B sweep of sentiment on the target (510 scorings) ..." in err and "generating target answers" in err
    assert "A/B sweep of sentiment (novel) on the target (510 scorings) ..." in err
    out = captured.out
    run = tmp_path / "logs" / "tiny" / "version_0"
    summary = out[out.index("Run folder:") :]
    assert f"Run folder: {run}" in summary and "Checkpoint: " in summary and "last.ckpt" in summary
    assert f"Transform: {run / 'transform'}" in summary
    assert "A/B behaviour-matching probability, %" in summary and "items per concept: sentiment 6" in summary
    assert "beta +4 (p_match):" in summary
    assert "| concept | no steering | own SV | transferred from tiny-llama |" in summary
    assert "judged answers" in summary and "beta -4 (vader):" in summary
    # what the validation curves measure, and how to read them going the other way from train/loss
    assert (
        "Reading the curves: train/loss is T's error on the pairs of temperature, size; val/loss, val/r2 and "
        in summary
    )
    assert "val/cos are on sentiment, concepts T never trains on (final: val/loss " in summary
    assert summary.rstrip().endswith(f"Curves: tensorboard --logdir {run.parent}")


def test_tensorboard_groups_each_concepts_vectors_and_fills_the_hparams_tab(tiny_run):
    from tensorboard.plugins.custom_scalar import layout_pb2

    _, run = tiny_run
    events = EventAccumulator(glob.glob(str(run / "events.out.tfevents.*"))[0])
    events.Reload()
    # one layout, written whole by each callback: the newest holds the A/B and the generation charts
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    categories = {c.title: c for c in layout.category}
    assert set(categories) == {"efficacy/sentiment", "efficacy/sentiment/novel", "gen/sentiment"}
    chart = next(c for c in categories["efficacy/sentiment"].chart if c.title.startswith("beta +4"))
    assert list(chart.multiline.tag) == [  # each tag matched literally (TensorBoard reads them as regexes)
        literal_tag(tag)
        for tag in [
            "efficacy/sentiment/own_sv/beta_+4",
            "efficacy/sentiment/transferred/beta_+4",
            "efficacy/sentiment/random_T/beta_+4",
            "efficacy/sentiment/source_on_source/beta_+4",
            "efficacy/sentiment/random_T/low/beta_+4",
            "efficacy/sentiment/random_T/high/beta_+4",
            "efficacy/sentiment/random_direction/low/beta_+4",
            "efficacy/sentiment/random_direction/high/beta_+4",
            "efficacy/sentiment/no_steering",
            "efficacy/sentiment/source_no_steering",
        ]
    ]
    # HPARAMS: the run's settings with its final figures
    # HPARAMS: one session per run, written when fitting ends: the run's settings with its final figures
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    starts = [
        plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
        for event in EventFileLoader(glob.glob(str(run / "events.out.tfevents.*"))[0]).Load()
        for value in event.summary.value
        if value.tag == "_hparams_/session_start_info"
    ]
    assert len(starts) == 1
    hparams = starts[0].hparams
    assert hparams["source"].string_value == "tiny-llama" and hparams["target_layer"].number_value == 2
    assert hparams["eval_concepts"].string_value == "sentiment" and hparams["model/init_method"].string_value == "ridge"
    scalars = set(events.Tags()["scalars"])
    assert "hp/efficacy/sentiment/transferred/beta_+4" in scalars and "hp/gen/sentiment/no_steering" in scalars


def test_the_summary_names_each_concepts_judge_when_they_differ(tiny_run, tmp_path):
    import copy

    from lcross.report.summary import run_summary
    from lcross.transform.files import CARD_NAME

    _, run = tiny_run
    card = json.loads((run / "transform" / CARD_NAME).read_text())
    fear = copy.deepcopy(card["generation"]["sentiment"])
    fear["target"]["metric"] = "lexicon:fear"
    card["generation"]["fear"] = fear
    (tmp_path / "transform").mkdir()
    (tmp_path / "transform" / CARD_NAME).write_text(json.dumps(card))
    summary = run_summary(tmp_path, None)
    assert "items per concept: sentiment 2 judged by vader, fear 2 judged by lexicon:fear" in summary
    assert "beta -4:" in summary and "(vader)" not in summary.split("judged answers")[1].split("\n")[2]


def _trainer_of(*args):
    """The Trainer the CLI builds for configs/tiny.yaml plus ``args`` (no fit)."""
    from lcross.cli.fit import LCrossCLI
    from lcross.training.datamodule import PairedDeltas
    from lcross.training.module import LCross

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        cli = LCrossCLI(LCross, PairedDeltas, args=["--config", "configs/tiny.yaml", *args], run=False)
    return cli.trainer


def test_callback_options_are_set_on_the_command_line_and_documented(capsys):
    from lcross.callbacks.generation_efficacy import GenerationEfficacy
    from lcross.callbacks.steering_efficacy import SteeringEfficacy

    def of(trainer, kind):
        return [c for c in trainer.callbacks if isinstance(c, kind)]

    trainer = _trainer_of("--efficacy.betas=[-2, 2]", "--generation.max_new_tokens=7")
    (efficacy,) = of(trainer, SteeringEfficacy)
    assert efficacy.betas == [-2.0, 2.0] and efficacy.every_n_epochs == 3  # the rest from the config
    assert of(trainer, GenerationEfficacy)[0].max_new_tokens == 7
    trainer = _trainer_of("--efficacy=null")
    assert of(trainer, SteeringEfficacy) == [] and len(of(trainer, GenerationEfficacy)) == 1
    with pytest.raises(SystemExit):
        main(["fit", "--efficacy.help", "SteeringEfficacy"])
    help_text = capsys.readouterr().out
    assert "--efficacy.betas" in help_text and "steering multipliers to sweep" in help_text
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    fit_help = capsys.readouterr().out
    assert "--efficacy.help" in fit_help and "--generation.help" in fit_help
