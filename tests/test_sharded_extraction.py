"""Extraction sharded over two CPU processes (DDP with the gloo backend) gives the deltas of a single process."""

import torch

from lcross import ModelSpec, PairedDeltas, extract_deltas, load_concept, load_model
from lcross.extraction.cache import DeltaCache
from lcross.extraction.settings import ExtractionSettings
from lcross.extraction.sharded import extract_deltas_sharded

from .conftest import DEMO_DATA

TWO_CPU_PROCESSES = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}


def test_two_processes_give_the_single_process_deltas(tmp_path):
    spec = ModelSpec("tiny-gemma3_text", tiny={"seed": 4})
    pairs = load_concept(DEMO_DATA / "size").train[:21]  # odd: the ranks get unequal shares
    cache = DeltaCache(tmp_path)
    sharded = extract_deltas_sharded(
        spec, pairs, 2, cache=cache, key="k", trainer_kwargs=TWO_CPU_PROCESSES, pairs_per_step=4, batch_size=3
    )
    model, tokenizer = load_model(spec)
    torch.testing.assert_close(sharded, extract_deltas(model, tokenizer, pairs, 2), atol=1e-5, rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.safetensors"]  # rank shards merged and removed


def test_data_module_can_extract_through_a_trainer(tmp_path):
    args = dict(
        source=ModelSpec("tiny-llama"),
        target=ModelSpec("tiny-llama", tiny={"seed": 9}),
        source_layer=1,
        target_layer=3,
        concepts={"size": str(DEMO_DATA / "size"), "age": str(DEMO_DATA / "age")},
        val_concepts=["age"],
        max_train_pairs=9,
    )
    sharded = PairedDeltas(
        **args, cache_dir=str(tmp_path / "a"), extraction=ExtractionSettings(trainer=TWO_CPU_PROCESSES)
    )
    single = PairedDeltas(**args, cache_dir=str(tmp_path / "b"))
    for dm in (sharded, single):
        dm.prepare_data()
        dm.setup()
    for side in ("source", "target"):
        for name in ("size", "age"):
            torch.testing.assert_close(sharded.deltas[side][name], single.deltas[side][name], atol=1e-5, rtol=1e-5)
