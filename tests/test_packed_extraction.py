"""Issue 10: a pair's two texts packed into one row, token-budget batches, the OOM back-off and the fallback.

References are independent of lcross: one unpadded text through a plain Hugging Face forward with
output_hidden_states.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcross import extract_deltas
from lcross.concepts.pairs import ContrastivePair, TextPair
from lcross.evaluation.ab import completion_logprobs
from lcross.extraction.activations import last_token_states
from lcross.models.packing import pack, packing_supported
from lcross.models.prompting import Encoded
from lcross.models.tiny import byte_tokenizer, tiny_model
from tests.conftest import reference_ids

ROOT = Path(__file__).resolve().parents[1]

PAIRS = [
    ContrastivePair("The film was", " wonderful", " terrible"),  # several tokens each
    ContrastivePair("A much longer prompt about the weather, which was", " hot", " cold and wet"),
    ContrastivePair("Pick one: (A) yes (B) no. Answer:", "A", "B"),  # one token each
    ContrastivePair("Hi", " (A)", " (B)"),  # completions sharing their first tokens
]


def _reference(model, tokenizer, text: str, layer: int, chat_template: bool) -> torch.Tensor:
    with torch.no_grad():
        out = model(reference_ids(tokenizer, text, chat_template), output_hidden_states=True)
    return out.hidden_states[layer + 1][0, -1]


def _reference_deltas(model, tokenizer, pairs, layer, chat_template):
    rows = []
    for p in pairs:
        if chat_template:
            # the completion starts the open assistant turn: reference_ids formats the prompt, the completion follows
            head = tokenizer.apply_chat_template(
                [{"role": "user", "content": p.prompt}], tokenize=False, add_generation_prompt=True
            )
            states = [
                model(
                    tokenizer(head + c.lstrip(), add_special_tokens=False, return_tensors="pt").input_ids,
                    output_hidden_states=True,
                ).hidden_states[layer + 1][0, -1]
                for c in (p.positive, p.negative)
            ]
        else:
            states = [_reference(model, tokenizer, p.prompt + c, layer, False) for c in (p.positive, p.negative)]
        rows.append(states[0] - states[1])
    return torch.stack(rows)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("chat_template", [False, True])
@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_packed_pairs_equal_a_plain_forward(arch, chat_template, side, attn):
    # gemma3_text: every block is a sliding-window block (window 8, shorter than the prompts): the packed mask must
    # apply the window in each text's own positions.
    model, tokenizer = tiny_model(arch, seed=3), byte_tokenizer()
    model.set_attn_implementation(attn)
    tokenizer.padding_side = side
    assert packing_supported(model)
    with torch.no_grad():
        expected = _reference_deltas(model, tokenizer, PAIRS, 2, chat_template)
    packed = extract_deltas(model, tokenizer, PAIRS, 2, chat_template=chat_template, pack_pairs=True)
    plain = extract_deltas(model, tokenizer, PAIRS, 2, chat_template=chat_template, pack_pairs=False)
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_texts_differing_inside_the_prompt_are_exact(arch):
    # A completion that merges into the prompt's last token when tokenised changes that token: the two texts then
    # share less than the prompt. Whole-text pairs may share nothing at all. Packing shares exactly the common prefix.
    model, tokenizer = tiny_model(arch, seed=3), byte_tokenizer()
    a = tokenizer("The cat sat on the mat").input_ids
    merged = [*a[:-1], a[-1] + 1, 40]  # differs at the prompt's last token
    prefix = a[:4]  # the second text ends inside the first one
    disjoint = [7, 8, 9]  # shares not even BOS
    texts = [Encoded(a, 5), Encoded(merged, 5), Encoded(a, 5), Encoded(prefix, 3), Encoded(disjoint, 1), Encoded(a, 5)]
    packed = last_token_states(model, tokenizer, texts, [1, 2], paired=True)
    with torch.no_grad():
        for i, t in enumerate(texts):
            out = model(torch.tensor([t.input_ids]), output_hidden_states=True).hidden_states
            for layer in (1, 2):
                torch.testing.assert_close(packed[layer][i], out[layer + 1][0, -1], atol=1e-5, rtol=1e-4)


def test_whole_text_pairs_are_packed_exactly(tiny_llama):
    model, tokenizer = tiny_llama
    pairs = [TextPair("I love this film.", "I hate this film."), TextPair("Yes", "No, not at all")]
    deltas = extract_deltas(model, tokenizer, pairs, 1, pack_pairs=True)
    for row, p in enumerate(pairs):
        expected = _reference(model, tokenizer, p.positive, 1, False) - _reference(
            model, tokenizer, p.negative, 1, False
        )
        torch.testing.assert_close(deltas[row], expected, atol=1e-5, rtol=1e-4)


def test_packed_row_layout():
    row = pack([1, 5, 6, 7], [1, 5, 8])
    assert row.input_ids == [1, 5, 6, 7, 8]
    assert row.positions == [0, 1, 2, 3, 2]
    assert row.ends == (3, 4)
    assert [row.column(1, j) for j in range(3)] == [0, 1, 4]


@pytest.mark.parametrize("pack_pairs", [True, False])
def test_token_budgets_from_one_text_to_all_give_the_same_deltas(tiny, pack_pairs):
    model, tokenizer = tiny
    everything = extract_deltas(model, tokenizer, PAIRS, [1, 3], max_batch_tokens=10**6, pack_pairs=pack_pairs)
    for budget in (1, 20, 64, 200):  # 1: one row per forward pass
        deltas = extract_deltas(model, tokenizer, PAIRS, [1, 3], max_batch_tokens=budget, pack_pairs=pack_pairs)
        for layer in (1, 3):
            torch.testing.assert_close(deltas[layer], everything[layer], atol=1e-6, rtol=1e-5)


def test_token_budget_sets_the_batches_longest_first(tiny_llama):
    model, tokenizer = tiny_llama
    seen: list[tuple[int, int]] = []
    handle = model.model.layers[0].register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[:2])))
    try:
        extract_deltas(model, tokenizer, PAIRS, 1, max_batch_tokens=120, pack_pairs=True)
    finally:
        handle.remove()
    assert all(rows * width <= 120 or rows == 1 for rows, width in seen)
    assert [w for _, w in seen] == sorted((w for _, w in seen), reverse=True)
    assert sum(rows for rows, _ in seen) == len(PAIRS)


def test_out_of_memory_halves_the_token_budget_and_retries(tiny_llama, caplog):
    # A fake allocator failure: the first block refuses any batch of more than 100 tokens (the longest row has 69).
    model, tokenizer = tiny_llama
    expected = extract_deltas(model, tokenizer, PAIRS, 2, max_batch_tokens=1)
    tried: list[int] = []

    def allocator(_module, args):
        tried.append(args[0].shape[0] * args[0].shape[1])
        if tried[-1] > 100:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake)")

    handle = model.model.layers[0].register_forward_pre_hook(allocator)
    try:
        with caplog.at_level(logging.WARNING, logger="lcross.extraction.activations"):
            deltas = extract_deltas(model, tokenizer, PAIRS, 2, max_batch_tokens=10**4)
    finally:
        handle.remove()
    torch.testing.assert_close(deltas, expected, atol=1e-6, rtol=1e-5)
    assert tried[0] > 100 and max(tried[-3:]) <= 100
    assert "out of memory" in caplog.text


def test_out_of_memory_on_a_single_row_is_raised(tiny_llama):
    model, tokenizer = tiny_llama

    def allocator(_module, _args):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    handle = model.model.layers[0].register_forward_pre_hook(allocator)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            extract_deltas(model, tokenizer, PAIRS, 2)
    finally:
        handle.remove()


def test_a_model_ignoring_custom_masks_falls_back_to_one_text_per_row(caplog):
    # The model drops any 4-D mask (as flash attention does) and attends causally over the whole row, so a packed
    # row would let the negative completion see the positive one. The self-check must notice and fall back.
    model, tokenizer = tiny_model("llama", seed=3), byte_tokenizer()

    def drop_custom_masks(_module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if isinstance(mask, dict) or (mask is not None and mask.dim() == 4):
            kwargs["attention_mask"] = None
        return args, kwargs

    model.model.register_forward_pre_hook(drop_custom_masks, with_kwargs=True)
    seen: list[int] = []
    model.model.layers[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    with caplog.at_level(logging.WARNING, logger="lcross.models.packing"):
        deltas = extract_deltas(model, tokenizer, PAIRS, 2, max_batch_tokens=10**4)
        scores = completion_logprobs(model, tokenizer, PAIRS, batch_size=8)
    assert "ignores custom 4-D masks" in caplog.text
    assert seen[3] == 2 * len(PAIRS)  # after the self-check (one packed row, two texts alone): one row per text
    with torch.no_grad():
        torch.testing.assert_close(deltas, _reference_deltas(model, tokenizer, PAIRS, 2, False), atol=1e-5, rtol=1e-4)
    # packing forced on would be wrong on this model: the check is not vacuous
    wrong = extract_deltas(model, tokenizer, PAIRS, 2, pack_pairs=True)
    assert not torch.allclose(wrong, deltas, atol=1e-4)
    assert scores.shape == (len(PAIRS), 2)


def test_attention_without_custom_masks_is_not_packed():
    model = tiny_model("llama", seed=3)
    model.config._attn_implementation = "flash_attention_2"  # only read, never run here
    assert not packing_supported(model)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_packed_scoring_equals_one_text_per_row(arch):
    model, tokenizer = tiny_model(arch, seed=3), byte_tokenizer()
    for chat_template in (False, True):
        packed = completion_logprobs(model, tokenizer, PAIRS, chat_template=chat_template, pack_pairs=True)
        plain = completion_logprobs(model, tokenizer, PAIRS, chat_template=chat_template, pack_pairs=False)
        torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)


def test_gpu_shapes_bench_runs_on_cpu(tmp_path):
    out = tmp_path / "results_gpu.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--gpu-shapes",
        "--device",
        "cpu",
        "--max-pairs",
        "16",
        "--shape-scale",
        "64",
        "--layers",
        "3",
        "--naive-pairs",
        "2",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    import json

    results = json.loads(out.read_text())
    assert [r["model"] for r in results["rows"]] == ["llama2-7b-shape", "qwen2-7b-shape"]
    for row in results["rows"]:
        assert row["pairs"] == 16 and row["packed"]
        assert row["agreement_vs_batched_full"]["sv_cosine"] > 0.9999
        assert row["unique_tokens"] < row["tokens_all_texts"]
        assert set(row["seconds"]) >= {"lcross", "batched_full_forward", "one_at_a_time_extrapolated", "flop_bound"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layer", "chat"),
    [("HuggingFaceTB/SmolLM2-135M-Instruct", 15, True), ("google/gemma-3-270m", 9, False)],  # Gemma-3-270m: no template
)
def test_packed_extraction_on_real_weights(name, layer, chat):
    # Real tokenizers merge across the prompt/completion boundary ("like" + "s" -> "likes"); CAA pairs with the chat
    # template are the workload of issue 10. Reference: each text alone through a plain forward with hidden states.
    from lcross import load_concept, load_model

    model, tokenizer = load_model(name)
    caa = load_concept(ROOT / "data" / "caa" / "corrigible-neutral-HHH", max_train=6).train
    merging = [ContrastivePair("I really like", "s", " cats"), ContrastivePair("The answer is", " (A)", " (B)")]
    for pairs, chat_template in ((caa, chat), (merging, False)):
        packed = extract_deltas(model, tokenizer, pairs, layer, chat_template=chat_template)
        with torch.no_grad():
            expected = _reference_deltas(model, tokenizer, pairs, layer, chat_template)
        scale = expected.norm(dim=1, keepdim=True)
        assert float(((packed - expected).norm(dim=1, keepdim=True) / scale).max()) < 1e-4
        margins = completion_logprobs(model, tokenizer, pairs, chat_template=chat_template, pack_pairs=True)
        plain = completion_logprobs(model, tokenizer, pairs, chat_template=chat_template, pack_pairs=False)
        torch.testing.assert_close(margins, plain, atol=1e-3, rtol=1e-4)
