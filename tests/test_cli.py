import glob
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lcross import LinearTransform, load_transform
from lcross.cli import main

from .conftest import ROOT

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses(config, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", config, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "data:" in printed and "source:" in printed


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
    from lcross.cli import console

    vector = tmp_path / "v.pt"
    torch.save(torch.ones(32) * 3, vector)  # tiny-gemma3_text has width 32
    argv = ["generate", "--model", "tiny-gemma3_text", "--vector", str(vector), "--layer", "1", "--beta", "-2"]
    assert console([*argv, "--beta", "2", "--prompt", "Hello", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "=== Hello" in out and "--- unsteered:" in out and "--- beta -2:" in out and "--- beta +2:" in out
    assert console(["generate", "--model", "tiny-gemma3_text", "--prompt", "Hi"]) == 2
    assert "give either --vector FILE or --run RUN --concept NAME" in capsys.readouterr().err
