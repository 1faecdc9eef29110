import glob

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
