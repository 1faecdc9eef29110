"""configs/demo.yaml's comments say what its values do."""

import re

import yaml

from .conftest import ROOT


def test_the_efficacy_comment_names_the_epochs_it_evaluates():
    text = (ROOT / "configs" / "demo.yaml").read_text()
    config = yaml.safe_load(text)
    every, epochs = config["efficacy"]["every_n_epochs"], config["trainer"]["max_epochs"]
    found = re.search(r"# every (\d+) epochs \(([\d, ]+)\): (\w+) points per curve", text)
    assert found, "the comment above efficacy.every_n_epochs"
    # SteeringEfficacy evaluates after epoch e when e % every == 0 (1-based), and after the last epoch
    evaluated = sorted({e for e in range(1, epochs + 1) if e % every == 0} | {epochs})
    assert int(found.group(1)) == every and [int(e) for e in found.group(2).split(",")] == evaluated
    words = {"four": 4, "five": 5, "six": 6, "ten": 10}
    assert words[found.group(3)] == len(evaluated)
