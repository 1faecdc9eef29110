"""Tiny randomly initialised causal LMs and a byte-level tokenizer, built in code with no download.

They make tests and the ``tiny`` config run in seconds anywhere. Their weights are random, so they prove that the
plumbing is right (shapes, layers, padding, hooks) and nothing about steering.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

# Small enough to run a forward pass in milliseconds; wide enough that a linear map between two of them is
# a real regression problem.
_DEFAULTS = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
)

_SPECIALS = ["<pad>", "<s>", "</s>"]
_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + pad, bos, eos) that prepends BOS, with a toy chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def tiny_model(arch: str = "llama", seed: int = 0, **overrides) -> torch.nn.Module:
    """A randomly initialised causal LM of the given Hugging Face ``model_type`` with the byte tokenizer's vocab.

    Args:
        arch: a Hugging Face model_type with decoder blocks (llama, qwen2, gemma3_text, mistral, gpt2, ...).
        seed: seed for the random weights; the same seed gives the same model.
        **overrides: config fields, e.g. hidden_size=48.
    """
    fields = {**_DEFAULTS, **overrides}
    if arch == "gpt2":
        fields = {
            "n_embd": fields["hidden_size"],
            "n_layer": fields["num_hidden_layers"],
            "n_head": fields["num_attention_heads"],
            "n_positions": 512,
        }
    if arch.startswith("gemma3"):
        fields.setdefault("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
        fields.setdefault("sliding_window", 8)
    vocab = 256 + len(_SPECIALS)
    config = AutoConfig.for_model(arch, vocab_size=vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2, **fields)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def check_tiny_fields(arch: str, fields: dict) -> None:
    """Refuses a tiny model's config override that its config class does not have (a typo would be ignored)."""
    from transformers import CONFIG_MAPPING

    from lcross.errors import LCrossInputError

    if arch not in CONFIG_MAPPING:
        raise LCrossInputError(
            f"unknown tiny model type {arch!r}", where="ModelSpec.name", fix="use tiny-<model_type>, e.g. tiny-llama"
        )
    known = CONFIG_MAPPING[arch]()
    unknown = sorted(k for k in fields if not hasattr(known, k))
    if unknown:
        raise LCrossInputError(
            f"the {arch} config has no field(s) {unknown}",
            where="ModelSpec.tiny",
            fix="use config fields such as hidden_size, num_hidden_layers, num_attention_heads (and seed)",
        )
    sizes = {k: v for k, v in fields.items() if k in _SIZES or k.endswith(("_size", "_layers", "_heads"))}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LCrossInputError(
                f"{name} is {value!r}", where=f"ModelSpec.tiny.{name}", fix="use a whole number >= 1"
            )


# Size fields of a tiny model's config: each must be a whole number >= 1 (0 divided by zero deep in the model).
_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
