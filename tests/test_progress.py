"""Progress that moves: a line every few seconds with how far a phase is and its ETA, and per-batch counts from the
sweeps and generations that add up to the phase's total."""

import logging
import time

import pytest
import torch

from lcross import steering_sweep
from lcross.concepts.pairs import ContrastivePair
from lcross.evaluation import ab
from lcross.models.tiny import byte_tokenizer, tiny_model
from lcross.progress import phase, progress_line
from lcross.steering.generation import generate_grid
from lcross.steering.hooks import Steering


def test_a_progress_line_says_how_far_and_when_it_ends():
    assert (
        progress_line("generating", 40, 312, "answers", 52.0)
        == "generating: 40/312 answers (13%), 52 s, ETA 5 min 54 s"
    )
    # 52 s for 40 answers: 1.3 s each, 272 left -> 353.6 s
    assert (
        progress_line("sweep", 0, 510, "scorings", 12.4)
        == "sweep: 0/510 scorings (0%), 12 s, no ETA before the first unit"
    )
    assert progress_line("aligning", 7, None, "passages", 3725.0) == "aligning: 7 passages, 1 h 2 min"
    assert progress_line("de-quantising x.gguf", 0, None, "texts", 75.0) == "de-quantising x.gguf: 1 min 15 s so far"
    assert progress_line("generating", 2.75, 8, "answers", 11.0) == "generating: 2/8 answers (34%), 11 s, ETA 21 s"
    assert progress_line("sweep", 5, 10, "scorings", 30.0, since_last_s=21.0).endswith(
        ", ETA 30 s (last unit 21 s ago)"
    )


def test_a_phase_writes_a_line_while_it_runs_even_between_units(caplog):
    with caplog.at_level(logging.INFO, logger="lcross"):
        with phase("slow work", 4, "steps", every_s=0.05) as advance:
            advance(1)
            time.sleep(0.4)  # one long step without news
            advance(3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "slow work (4 steps) ..." and lines[-1].startswith("slow work: done in ")
    during = lines[1:-1]
    assert during and all(line.startswith("slow work: 1/4 steps (25%), ") for line in during[:2])
    assert all(", ETA " in line for line in during[:2])


@pytest.mark.parametrize("reuse_prefix", [True, False])
@pytest.mark.parametrize("replay_tokens", [1, ab.REPLAY_MAX_TOKENS])
def test_a_sweep_counts_every_scoring_once(reuse_prefix, replay_tokens, monkeypatch):
    monkeypatch.setattr(ab, "REPLAY_MAX_TOKENS", replay_tokens)  # 1: every variant replayed in a group of its own
    model, tokenizer = tiny_model("llama", seed=3, hidden_size=32), byte_tokenizer()
    pairs = [ContrastivePair(p, " w", " t") for p in ("The film was", "My day", "It was", "Soup", "A trip")]
    g = torch.Generator().manual_seed(0)
    vectors = {name: torch.randn(32, generator=g) for name in ("a", "b", "c")}
    counts: list[int] = []
    steering_sweep(
        model, tokenizer, pairs, 1, vectors, [-1.0, 1.0], batch_size=4, reuse_prefix=reuse_prefix,
        progress=counts.append,
    )  # fmt: skip
    assert sum(counts) == len(pairs) * (1 + 3 * 2) and len(counts) > 2  # per batch (and group), not once at the end


def test_generate_grid_moves_the_progress_at_every_decoding_step():
    model, tokenizer = tiny_model("llama", seed=3, hidden_size=32), byte_tokenizer()
    vector = torch.ones(32)
    grid = {"unsteered": None, "up": [Steering(vector, 1, 1.0, "after_prompt")]}
    counts: list[float] = []
    prompts = ["Hi", "Hello there", "Yo"]
    plain = generate_grid(model, tokenizer, prompts, grid, max_new_tokens=4, batch_size=4)
    texts = generate_grid(model, tokenizer, prompts, grid, max_new_tokens=4, batch_size=4, progress=counts.append)
    assert texts == plain  # reporting changes nothing
    # 6 rows in batches of 4 and 2: a quarter of each batch per token (random tiny models never stop early), and the
    # calls add up to every answer
    assert counts == [1.0] * 4 + [0.5] * 4 and sum(counts) == 6
