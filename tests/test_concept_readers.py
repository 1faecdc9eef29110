"""Concept readers: one class per kind of source, the order ``load_concept`` consults them in, a user's reader chosen
by class path or registered, and the pairs of every existing source unchanged by the split into readers."""

import json
from pathlib import Path

import pytest

from .concept_cases import cases, outcome
from .conftest import needs_shared

# Recorded with lcross at 36f030c, before the readers were split out of concepts/loading.py and text_pairs.py: the
# old code is the reference, so a reader that reads one pair differently, or in another order, changes a hash here.
RECORDED = json.loads((Path(__file__).parent / "concept_fingerprints.json").read_text())


def test_every_case_was_recorded():
    assert set(cases()) <= set(RECORDED)


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_every_source_reads_the_pairs_it_read_before_the_split(case, tmp_path):
    """The fingerprint keys the activation cache: an unchanged fingerprint is an unchanged cache key."""
    if case.startswith("shared/"):
        needs_shared(*case.split("/")[1:])
    source, name, options = cases()[case](tmp_path)
    assert outcome(source, name, options) == RECORDED[case]
