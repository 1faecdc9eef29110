"""Benchmark: the cost of the fluency axis and of the cost-to-the-model measure, as a share of the generation sweep
they judge, measured in one run (target: <= 0.3x).

    python bench/fluency_cost.py            # Gemma-3-270M (the demo's target), 24 prompts, 32 new tokens
    python bench/fluency_cost.py --quick    # 4 prompts, 8 new tokens

The sweep is what ``GenerationEfficacy`` generates for one concept: every prompt unsteered and under three vectors at
four betas, in shared batches. The fluency judge then scores every answer (one forward pass per batch, nothing
cached beforehand) and ``model_cost`` reads 8 passages of ``data/corpus/held_out`` (96 tokens each, the engine's
defaults) unsteered and under each vector at one beta. Writes ``bench/results_fluency.json``.

It also times the floor of any exact fluency judge: the output layer alone (the model's own output weights) at every
answer token, the logits that the answer's NLL needs; generation computes the same logits once, so on a model whose
output layer is most of a decoding step (Gemma-3: 262k words by 640) the fluency axis cannot cost much less than that.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import TARGET, machine, timed  # noqa: E402
from lcross import load_model  # noqa: E402
from lcross.evaluation.judges.fluency import FluencyJudge  # noqa: E402
from lcross.evaluation.model_cost import DEFAULT_COST_TEXT, model_cost, neutral_passages  # noqa: E402
from lcross.files import atomic_path  # noqa: E402
from lcross.steering.generation import generate_grid  # noqa: E402
from lcross.steering.vector import SteeringVector  # noqa: E402

LAYER = 9
# the demo's open-ended sentiment prompts (configs/demo.yaml answers all 24)
PROMPTS = [
    json.loads(line)["prompt"] for line in (ROOT / "data/demo/sentiment/open_ended.jsonl").read_text().splitlines()
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 prompts and 8 new tokens, for a smoke check")
    parser.add_argument("--model", default=TARGET)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_fluency.json"))
    args = parser.parse_args()
    prompts, new_tokens = (PROMPTS[:4], 8) if args.quick else (PROMPTS, 32)
    model, tokenizer = load_model(args.model)
    width = model.get_input_embeddings().weight.shape[1]
    generator = torch.Generator().manual_seed(0)
    directions = [torch.nn.functional.normalize(torch.randn(width, generator=generator), dim=0) for _ in range(3)]
    # three seeded directions, at a norm that changes the text without erasing it
    vectors = {f"v{k}": SteeringVector.single(d * 20, LAYER) for k, d in enumerate(directions)}
    grid: dict = {"unsteered": None}
    for name, vector in vectors.items():
        for beta in (-1.5, -1.0, 1.0, 1.5):
            grid[name, beta] = vector.steerings(beta, "after_prompt")
    t_generate, answers = timed(
        lambda: generate_grid(model, tokenizer, prompts, grid, max_new_tokens=new_tokens, batch_size=32)
    )
    flat_prompts = [p for _ in grid for p in prompts]
    flat_answers = [a for key in grid for a in answers[key]]  # type: ignore[index]
    judge = FluencyJudge(model, tokenizer, batch_size=32)
    t_fluency, _ = timed(lambda: judge(flat_prompts, flat_answers))
    passages = neutral_passages(str(ROOT / DEFAULT_COST_TEXT), 8)
    points = {name: [1.0] for name in vectors}
    t_cost, _ = timed(lambda: model_cost(model, tokenizer, passages, vectors, points, max_tokens=96))
    ratio = (t_fluency + t_cost) / t_generate
    answer_tokens = sum(len(tokenizer(a, add_special_tokens=False).input_ids) for a in flat_answers)
    t_floor = output_layer_seconds(model, answer_tokens)
    result = {
        "machine": machine(),
        "command": "python bench/fluency_cost.py" + (" --quick" if args.quick else ""),
        "model": args.model,
        "answers": len(flat_answers),
        "max_new_tokens": new_tokens,
        "answer_tokens": answer_tokens,
        "seconds": {
            "generation_sweep": t_generate,
            "fluency": t_fluency,
            "cost": t_cost,
            "output_layer_at_answer_tokens": t_floor,
        },
        "ratio": ratio,
        "floor_ratio": t_floor / t_generate,
        "forward_passes": judge.forward_passes,
    }
    print(
        f"fluency + cost scoring on {args.model.split('/')[-1]} ({len(flat_answers)} answers of {new_tokens} tokens, "
        f"{len(passages)} neutral passages x {len(vectors)} vectors): {t_fluency:.1f} s + {t_cost:.1f} s = "
        f"{ratio:.2f}x the generation sweep's {t_generate:.1f} s (target <= 0.3); the output layer alone at the "
        f"{answer_tokens} answer tokens, which any exact fluency NLL needs: {t_floor:.1f} s = "
        f"{t_floor / t_generate:.2f}x",
        flush=True,
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


def output_layer_seconds(model: torch.nn.Module, tokens: int, rows: int = 512) -> float:
    """Seconds for the model's output layer (and the log-sum-exp an NLL takes of it) on ``tokens`` hidden states, in
    pieces of ``rows``: the vocabulary-wide work at every answer token. Pieces of hundreds of rows make it bound by
    arithmetic rather than by reading the weights (670 MB for Gemma-3) once per piece, as a decoding step does."""
    weight = model.get_output_embeddings().weight.detach()
    hidden = torch.randn(tokens, weight.shape[1], generator=torch.Generator().manual_seed(0), dtype=weight.dtype)

    def run() -> None:
        with torch.inference_mode():
            for piece in hidden.split(rows):
                torch.logsumexp(torch.nn.functional.linear(piece, weight), -1)

    return timed(run)[0]


if __name__ == "__main__":
    main()
