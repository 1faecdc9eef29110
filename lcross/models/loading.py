"""Loading language models: hub ids, local folders, GGUF files (de-quantised once, then cached), tiny test models,
optionally with a PEFT adapter merged in. Models come back in eval mode with gradients off."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.files import atomic_path, cache_root, remove_stale_temporaries, sha256_file
from lcross.models.packaged import PACKAGED, packaged_gguf
from lcross.progress import phase

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny-"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
_GGUF_MAGIC = b"GGUF"


@dataclass
class ModelSpec:
    """Which language model to load, and how.

    Args:
        name: a Hugging Face hub id, a local model folder, a path to a ``.gguf`` file, or ``tiny-<model_type>``
            (e.g. ``tiny-llama``) for a small random model built in code (tests and smoke runs only).
        gguf_file: the GGUF file name inside ``name`` when ``name`` is a folder or hub id holding GGUF files.
        revision: hub revision (branch, tag or commit); pin a commit for reproducible caches.
        adapter: a PEFT adapter folder or hub id, merged into the weights after loading.
        dtype: float32, bfloat16, float16 or float64; auto (the default) is bfloat16 on CUDA and float32 elsewhere.
        device: cpu, cuda, cuda:N, or auto (cuda when available).
        device_map: passed to from_pretrained (e.g. ``auto``) to spread a large model over GPUs with accelerate;
            overrides ``device``.
        attn_implementation: the attention kernel passed to from_pretrained: sdpa (the default: fused on CUDA, and it
            honours the custom 4-D masks lcross packs each pair's two texts with), eager, or flash_attention_2 (which
            ignores custom masks: extraction then reads each text in its own row).
        trust_remote_code: run model code shipped with a hub repo. Off unless you turn it on.
        prefer_packaged: for hub ids that ship as PyPI packages (SmolLM2-135M-Instruct, Gemma-3-270M), load the
            packaged GGUF when its package is installed. The offline demo relies on this.
        tiny: config overrides for ``tiny-*`` models (hidden_size, num_hidden_layers, ...) and their ``seed``.
    """

    name: str
    gguf_file: str | None = None
    revision: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    device: str = "cpu"
    device_map: str | None = None
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    prefer_packaged: bool = True
    tiny: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype == "auto":  # resolved here, so cache keys and cards name the dtype actually used
            on_cuda = str(self.device).startswith("cuda") or (self.device == "auto" and torch.cuda.is_available())
            self.dtype = "bfloat16" if on_cuda or self.device_map is not None else "float32"
        if self.dtype not in _DTYPES:
            raise LCrossInputError(
                f"unknown dtype {self.dtype!r}", where="ModelSpec.dtype", fix=f"use one of {list(_DTYPES)}"
            )
        if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", str(self.device)):
            raise LCrossInputError(
                f"unknown device {self.device!r}", where="ModelSpec.device", fix="use cpu, cuda, cuda:N, mps or auto"
            )
        if self.device == "mps":
            _check_device_present("mps")
        if self.name.startswith(TINY_PREFIX):
            from lcross.models.tiny import check_tiny_fields

            check_tiny_fields(self.name[len(TINY_PREFIX) :], {k: v for k, v in self.tiny.items() if k != "seed"})
        if self.adapter:
            _check_adapter(self.adapter)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def resolve(self) -> _Resolved:
        """Decides where the weights come from, without loading them."""
        if self.name.startswith(TINY_PREFIX):
            return _Resolved("tiny", self.name[len(TINY_PREFIX) :])
        path = Path(self.name)
        if self.gguf_file is None and self.name.endswith(".gguf"):
            return _Resolved("gguf", str(path.parent), path.name)
        if self.gguf_file is not None:
            return _Resolved("gguf", self.name, self.gguf_file)
        if self.prefer_packaged and self.name in PACKAGED and not path.exists():
            packaged = packaged_gguf(self.name)
            if packaged is not None:
                return _Resolved("gguf", str(packaged.parent), packaged.name)
        _check_model_folder(self.name)
        return _Resolved("pretrained", self.name)

    def fingerprint(self) -> str:
        """Identifies the weights exactly enough to key a cache of activations on them."""
        resolved = self.resolve()
        if resolved.kind == "tiny":
            ident = json.dumps({"arch": resolved.path, **self.tiny}, sort_keys=True)
        elif resolved.kind == "gguf":
            ident = "gguf:" + _gguf_sha256(_check_gguf(resolved))
        elif Path(resolved.path).is_dir():
            ident = "dir:" + _folder_fingerprint(Path(resolved.path))
        else:
            ident = f"hub:{resolved.path}@{self.revision or _cached_hub_commit(resolved.path) or 'main'}"
        if self.adapter:
            adapter = Path(self.adapter)
            ident += "+adapter:" + (_folder_fingerprint(adapter) if adapter.is_dir() else self.adapter)
        return hashlib.sha256(f"{ident}|{self.dtype}".encode()).hexdigest()[:16]

    def config(self) -> Any:
        """The model's Hugging Face config, read without loading weights (fast)."""
        from transformers import AutoConfig

        resolved = self.resolve()
        if resolved.kind == "tiny":
            from lcross.models.tiny import tiny_model

            return tiny_model(resolved.path, **self.tiny).config
        if resolved.kind == "gguf":
            # Parsing a GGUF's metadata costs about as much as de-quantising it: do that once, then read config.json.
            return AutoConfig.from_pretrained(_dequantised(resolved))
        with _hub_errors_named(resolved.path):
            return AutoConfig.from_pretrained(
                resolved.path, revision=self.revision, trust_remote_code=self.trust_remote_code
            )

    def tokenizer(self) -> Any:
        """The model's tokenizer alone, without its weights (to measure texts before anything loads)."""
        from transformers import AutoTokenizer

        resolved = self.resolve()
        if resolved.kind == "tiny":
            from lcross.models.tiny import byte_tokenizer

            return byte_tokenizer()
        if resolved.kind == "gguf":
            return AutoTokenizer.from_pretrained(_dequantised(resolved))
        with _hub_errors_named(resolved.path):
            return AutoTokenizer.from_pretrained(
                resolved.path, revision=self.revision, trust_remote_code=self.trust_remote_code
            )

    def hidden_size(self) -> int:
        return int(self.config().get_text_config().hidden_size)

    def num_layers(self) -> int:
        return int(self.config().get_text_config().num_hidden_layers)

    def describe(self) -> dict[str, Any]:
        """The spec's fields, plus where the weights actually came from: for a GGUF file (e.g. the packaged Q4
        models a hub id resolves to offline) its path and SHA-256, so a card never claims the hub's weights."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}
        resolved = self.resolve()
        if resolved.kind == "gguf":
            path = _check_gguf(resolved)
            out["weights"] = {"gguf": str(path.resolve()), "sha256": _gguf_sha256(path)}
        return out


@dataclass(frozen=True)
class _Resolved:
    kind: str  # tiny | gguf | pretrained
    path: str
    gguf_file: str | None = None


def load_model(spec: ModelSpec | str | dict) -> tuple[torch.nn.Module, Any]:
    """Loads a causal LM and its tokenizer: eval mode, no gradients, on the spec's device and dtype.

    A tokenizer without a pad token gets its EOS (or UNK) token as pad token; padding never changes lcross's
    results because every read and write uses the attention mask.
    """
    spec = as_spec(spec)
    resolved = spec.resolve()
    if resolved.kind == "tiny":
        from lcross.models.tiny import byte_tokenizer, tiny_model

        model, tokenizer = tiny_model(resolved.path, **spec.tiny).to(spec.torch_dtype), byte_tokenizer()
        model.set_attn_implementation(spec.attn_implementation)
    elif resolved.kind == "gguf":
        model, tokenizer = _load_gguf(resolved, spec)
    else:
        model, tokenizer = _load_pretrained(resolved.path, spec)
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
    if spec.device_map is None:
        model = model.to(resolve_device(spec.device))
    _ensure_pad_token(tokenizer, model)
    model.eval().requires_grad_(False)
    return model, tokenizer


def as_spec(spec: ModelSpec | str | dict) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, str):
        return ModelSpec(name=spec)
    return ModelSpec(**spec)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _check_device_present(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LCrossInputError(f"device {device!r} asked for, but CUDA is not available", fix="use device: cpu or auto")
    return torch.device(device)


def _load_pretrained(path: str, spec: ModelSpec) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = dict(revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    with _hub_errors_named(path):
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=spec.torch_dtype,
            device_map=spec.device_map,
            attn_implementation=spec.attn_implementation,
            **common,
        )
        tokenizer = AutoTokenizer.from_pretrained(path, **common)
    return model, tokenizer


def _looks_like_a_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``): absolute, relative with ./ or ../, ~, or deeper than one /."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")


def _check_model_folder(name: str) -> None:
    """A model name that is a local path must be a folder with a config.json; refused here, before any loading, with
    what is wrong (transformers reads a missing folder as a malformed hub id)."""
    path = Path(name).expanduser()
    if path.is_file():
        raise LCrossInputError(
            "is a file, not a model folder",
            where=name,
            fix="give the folder that holds config.json and the weights, or a .gguf file",
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            found = sorted(p.name for p in path.iterdir())[:8]
            raise LCrossInputError(
                f"the folder holds no config.json (it holds {found or 'nothing'})",
                where=name,
                fix="give a folder written by save_pretrained or downloaded with `hf download <id> --local-dir`",
            )
        return
    if _looks_like_a_path(name):
        raise LCrossInputError(
            f"no such model folder (looked from {Path.cwd()})",
            where=name,
            fix="check the path; a hub id has the form org/name",
        )


def _check_adapter(adapter: str) -> None:
    path = Path(adapter).expanduser()
    if path.is_dir() and not (path / "adapter_config.json").is_file():
        raise LCrossInputError(
            "the adapter folder holds no adapter_config.json",
            where=f"ModelSpec.adapter {adapter}",
            fix="give a folder written by a PEFT model's save_pretrained, or a hub id",
        )
    if not path.exists() and _looks_like_a_path(adapter):
        raise LCrossInputError(
            f"no such adapter folder (looked from {Path.cwd()})",
            where=f"ModelSpec.adapter {adapter}",
            fix="check the path; a hub id has the form org/name",
        )


@contextlib.contextmanager
def _hub_errors_named(name: str) -> Iterator[None]:
    """A hub id that cannot be fetched (offline, unknown, gated) becomes one error naming it and the ways out."""
    try:
        yield
    except OSError as err:
        if Path(name).exists():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise LCrossInputError(
            "the model is not in the local Hugging Face cache and could not be fetched from the hub"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {str(err).splitlines()[0][:200]}",
            where=name,
            fix="check the id and the network; or download it where there is a network (`hf download "
            f"{name}`) and run with HF_HUB_OFFLINE=1; or give a local model folder",
        ) from None


def _load_gguf(resolved: _Resolved, spec: ModelSpec) -> tuple[torch.nn.Module, Any]:
    """De-quantising a GGUF takes 15-50 s on 2 cores; the float weights are saved once and reloaded in seconds."""
    return _load_pretrained(str(_dequantised(resolved)), spec)


def _dequantised(resolved: _Resolved) -> Path:
    """The folder of the GGUF's float weights, de-quantising it on first use."""
    gguf = _check_gguf(resolved)
    cached = _dequantised_dir(resolved)
    remove_stale_temporaries(cached.parent)  # what killed de-quantisations left behind
    if cached.exists() and not verify_checksums(cached):
        log.warning(
            "the de-quantised model %s is damaged or unverified (checksum mismatch); de-quantising again", cached
        )
        shutil.rmtree(cached)
    if not cached.exists():
        with phase(f"de-quantising {gguf.name} once (float weights to {cached})"):
            _dequantise(gguf, cached)
    return cached


def _dequantise(gguf: Path, cached: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (ValueError, IndexError, KeyError, struct.error, EOFError) as err:
        # gguf-py reads past the end of a truncated file as a short array ("cannot reshape", "index out of bounds")
        raise LCrossInputError(
            f"cannot be read as a GGUF model ({gguf.stat().st_size:,} bytes; truncated or damaged?): "
            f"{type(err).__name__}: {str(err)[:160]}",
            where=str(gguf),
            fix="download the file again and compare its SHA-256 with the publisher's; or give another model",
        ) from None
    # transformers refuses to save a model loaded from GGUF: copy the float weights into a plain model.
    config = quantised.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    with atomic_path(cached) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_checksums(tmp)


CHECKSUMS_NAME = "lcross_checksums.json"


def write_checksums(folder: Path) -> None:
    """Records the SHA-256 of every file in ``folder`` (a de-quantised model), checked before each use."""
    sums = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / CHECKSUMS_NAME).write_text(json.dumps(sums, indent=1, sort_keys=True))


def verify_checksums(folder: Path) -> bool:
    """Whether every file of ``folder`` matches its recorded SHA-256 (and none is missing or added); checked once per
    process for an unchanged folder."""
    record = folder / CHECKSUMS_NAME
    if not record.is_file():
        return False
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file())
    return _checksums_match(str(folder), stamp)


@functools.lru_cache(maxsize=16)
def _checksums_match(folder: str, _stamp: tuple) -> bool:
    root = Path(folder)
    try:
        expected = json.loads((root / CHECKSUMS_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {CHECKSUMS_NAME}
    if not isinstance(expected, dict) or set(expected) != present:
        return False
    return all(sha256_file(root / name) == digest for name, digest in expected.items())


@functools.lru_cache(maxsize=16)
def _gguf_sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _gguf_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process for a given (path, size, mtime)."""
    stat = path.stat()
    return _gguf_sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _dequantised_dir(resolved: _Resolved) -> Path:
    gguf = Path(resolved.path) / (resolved.gguf_file or "")
    stat = gguf.stat() if gguf.exists() else None
    # Keyed on the file's identity (path, size, mtime) so that checking the cache needs no full read of the file.
    ident = f"{gguf.resolve()}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"
    return cache_root() / "models" / f"{gguf.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _check_gguf(resolved: _Resolved) -> Path:
    path = Path(resolved.path) / (resolved.gguf_file or "")
    if not path.is_file():
        raise LCrossInputError("GGUF file not found", where=str(path), fix="check the path, or name a hub id instead")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != _GGUF_MAGIC:
        raise LCrossInputError(
            f"not a GGUF file (it starts with {magic!r}, not {_GGUF_MAGIC!r})",
            where=str(path),
            fix="point to a .gguf model file, or give a Hugging Face model folder as name without gguf_file",
        )
    return path


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            # config files by content; large weight files by size and modification time (a full hash of a 14 GB
            # checkpoint would cost more than the extraction it guards)
            content = path.read_bytes() if stat.st_size < 1 << 20 else f"{stat.st_size}|{stat.st_mtime_ns}".encode()
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + content)
    return digest.hexdigest()[:16]


def _cached_hub_commit(repo_id: str) -> str | None:
    """The commit the local hub cache resolves 'main' to, if the model was downloaded before."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    ref = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "refs" / "main"
    return ref.read_text().strip() if ref.exists() else None


def _ensure_pad_token(tokenizer: Any, model: torch.nn.Module) -> None:
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
        else:
            tokenizer.pad_token = fallback


def _check_device_present(device: str) -> None:
    """A device this machine lacks is named when the spec is built, before any run folder or cache entry is written
    (torch would fail only when the weights move, deep in extraction)."""
    if device == "mps" and not (torch.backends.mps.is_available()):
        raise LCrossInputError(
            "device is 'mps', but this machine has no Apple MPS device (or torch is built without it)",
            where="ModelSpec.device",
            fix="use cpu, cuda or auto",
        )
    if device.startswith("cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or torch is built without CUDA)"
            raise LCrossInputError(
                f"device is {device!r}, but this machine has {have}",
                where="ModelSpec.device",
                fix="use cpu or auto" + (f", or cuda:0 to cuda:{count - 1}" if count else ""),
            )
