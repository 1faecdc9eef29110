"""Resume checks that it is the same run: ``--ckpt_path`` (also ``last``) with a setting that defines T or its rows
changed is refused, naming each change, before anything (config.yaml) is written."""

import json

import pytest

from lcross import LCrossInputError

from .conftest import ROOT, fit_tiny

QUICK = ("--trainer.max_epochs=1", "--efficacy=null", "--generation=null")


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    fit_tiny(root, *QUICK)
    return root, root / "logs" / "tiny" / "version_0"


CHANGES = [
    (["--data.target_layer=1"], ["data.target_layer: 2 in the checkpoint, 1 now"]),
    (
        ['--data.target={"name": "tiny-gemma3_text", "tiny": {"hidden_size": 64, "seed": 2}}'],
        ["data.target:", "model.transform (its class, widths"],
    ),
    (['--data.source={"name": "tiny-llama", "tiny": {"hidden_size": 32, "seed": 9}}'], ["data.source:"]),
    (
        ['--data.concepts={"sentiment": "data/demo/sentiment", "age": "data/demo/age", "size": "data/demo/size"}'],
        ["data.concepts (training concepts)", "data.concepts (their pairs)"],
    ),
    (["--data.max_train_pairs=12"], ["data.concepts (their pairs)"]),
    (["--data.sv_method=repe", "--data.target_layer=3"], ["data.sv_method", "data.target_layer"]),
    (["--model.loss=cosine"], ["model.loss"]),
]


@pytest.mark.parametrize("change,named", CHANGES)
def test_a_resume_with_a_changed_setting_is_refused_before_anything_is_written(one_epoch, change, named):
    root, run = one_epoch
    config_before = (run / "config.yaml").read_bytes()
    listing = sorted(p.relative_to(root) for p in root.rglob("*") if "cache" not in p.parts)
    with pytest.raises(LCrossInputError) as refused:
        fit_tiny(root, *QUICK, "--trainer.max_epochs=2", "--ckpt_path=last", *change)
    message = str(refused.value)
    assert "the checkpoint was trained with other settings" in message and "Fix:" in message
    assert "start a new run: leave out --ckpt_path" in message
    for part in named:
        assert part in message
    assert (run / "config.yaml").read_bytes() == config_before
    assert sorted(p.relative_to(root) for p in root.rglob("*") if "cache" not in p.parts) == listing


def test_an_explicit_checkpoint_of_another_setup_is_refused_and_leaves_no_run_folder(one_epoch):
    root, run = one_epoch
    from lcross.cli.fit import run as fit_command

    argv = [
        "fit",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        f"--trainer.logger.init_args.save_dir={root / 'logs'}",
        f"--data.cache_dir={root / 'cache'}",
        *QUICK,
        f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "--data.target_layer=3",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        with pytest.raises(LCrossInputError, match="data.target_layer: 2 in the checkpoint, 3 now"):
            fit_command(argv)
    assert sorted(p.name for p in (root / "logs" / "tiny").iterdir()) == ["version_0"]


def test_a_resume_may_change_how_it_trains_not_what(one_epoch):
    root, run = one_epoch
    fit_tiny(root, *QUICK, "--trainer.max_epochs=2", "--ckpt_path=last", "--model.lr=0.002")
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    assert card["hyperparameters"]["lr"] == 0.002 and card["target_layer"] == 2
