"""T fitted on a corpus's token states: the data module's shards, resumable extraction, the closed form from streamed
statistics, gradient descent from the streaming loader, mixed sources, and the CLI end to end (tiny models)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

import lcross.corpus.states as corpus_states
from lcross.corpus.settings import CorpusSettings
from lcross.errors import LCrossInputError
from lcross.models.loading import ModelSpec
from lcross.training.datamodule import PairedDeltas
from lcross.training.module import LCross
from lcross.transform.linear import LinearTransform
from lcross.transform.sufficient_stats import solve

PARAGRAPHS = [
    "The ferry left the harbour at six, and the gulls followed it past the lighthouse.",
    "She measured the flour twice, because the recipe in her grandmother's hand was hard to read.",
    "Rain fell all afternoon on the market square; the stallholders packed up early and went home.",
    "He had never seen a glacier before, and the blue light inside the ice surprised him.",
    "The committee agreed to meet again in March, once the survey of the old bridge was finished.",
    "A small dog waited by the bakery door every morning until someone gave it a crust.",
]


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"{text} (Part {i}.)" for i, text in enumerate(PARAGRAPHS * 4)), encoding="utf-8")
    return path


def _corpus(path, **options) -> CorpusSettings:
    return CorpusSettings(**{"path": str(path), "passage_chars": 200, "shard_rows": 400, "batch_size": 0, **options})


def _data(tmp_path, corpus_file, fit_on="corpus", **overrides) -> PairedDeltas:
    options = dict(
        source=ModelSpec("tiny-llama", tiny={"hidden_size": 24, "seed": 1}),
        target=ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 32, "seed": 2}),
        source_layer=1,
        target_layer=2,
        concepts={"sentiment": "data/demo/sentiment", "size": "data/demo/size", "speed": "data/demo/speed"},
        val_concepts=["sentiment"],
        max_train_pairs=16,
        max_test_items=4,
        cache_dir=str(tmp_path / "cache"),
        fit_on=fit_on,
        corpus=_corpus(corpus_file),
    )
    return PairedDeltas(**{**options, **overrides})


def test_shards_are_whole_passages_up_to_the_cap(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1000))
    plan = data.corpus.plan()
    assert plan.rows == 1000
    assert len(plan.shards) == 2 and plan.shards[0].rows >= 400
    # the byte tokenizer on both sides: every byte after BOS is paired, less the skipped first pairs of each passage
    assert plan.kept["source"] == pytest.approx(plan.kept["target"])
    data.prepare_corpus()
    xs, xt = data.corpus.load_shard(plan.shards[0])
    assert xs.shape == (plan.shards[0].rows, 1, 24) and xt.shape == (plan.shards[0].rows, 1, 32)


def test_a_killed_extraction_resumes_at_the_first_missing_shard(tmp_path, corpus_file, monkeypatch):
    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1200))
    n_shards = len(data.corpus.plan().shards)
    real = corpus_states.token_states
    calls = []

    def dies_on_the_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(corpus_states, "token_states", dies_on_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        data.prepare_corpus()
    calls.clear()
    monkeypatch.setattr(corpus_states, "token_states", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1200))
    again.prepare_corpus()
    assert len(calls) == 2 * n_shards - 1  # the source's first shard was kept


def test_a_shard_entry_an_older_lcross_wrote_is_extracted_again_not_a_failure_when_read(tmp_path, corpus_file):
    from safetensors.torch import save_file

    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1200))
    data.prepare_corpus()
    shard = data.corpus.plan().shards[1]
    xs, xt = data.corpus.load_shard(shard)
    key = next(iter(data.corpus.shard_keys("source", shard).values()))
    # the same tensor under its own name, but with no record of what it is (as lcross wrote before records)
    save_file({"deltas": xs[:, 0].contiguous()}, data.cache.path(key), metadata={"checksum": "old"})
    assert data.cache.recorded(key) is False and data.corpus.cache.path(key).exists()
    again = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1200))
    assert [s.index for s in again.corpus.missing("source")] == [shard.index] and not again.corpus.missing("target")
    again.prepare_corpus()
    assert again.cache.recorded(key)
    ys, yt = again.corpus.load_shard(shard)
    assert torch.equal(ys, xs) and torch.equal(yt, xt)


def _T(data: PairedDeltas) -> LinearTransform:
    """The T the CLI builds for this data (its widths and one layer pair linked in)."""
    return LinearTransform(data.d_source, data.d_target, data.layer_pairs)


def _mse(stats, weight, bias) -> float:
    return stats.residual_sum(weight.double(), None if bias is None else bias.double()) / (stats.n * weight.shape[1])


def test_gradient_descent_from_the_streaming_loader_reaches_the_closed_form(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=2000, batch_size=250))
    data.prepare_corpus()
    data.setup("fit")
    stats = data.corpus.statistics(0)
    weight, bias = solve([(stats, 1.0, True)], "lstsq")
    best = _mse(stats, weight, bias)
    model = LCross(_T(data), fit_on="corpus", init="random", lr=0.3)
    trainer = L.Trainer(
        max_epochs=100,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[_LowerLearningRate(after=70)],
    )
    trainer.fit(model, datamodule=data)
    reached = _mse(stats, model.transform.matrix().detach(), model.transform.bias.detach())
    assert reached <= 1.01 * best, (reached, best)


class _LowerLearningRate(L.Callback):
    """Constant-rate Adam on mini-batches hovers around the minimum; a lower rate for the last epochs settles it."""

    def __init__(self, after: int):
        self.after = after

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.after:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] /= 10


def test_closed_form_start_on_both_sources_weighs_them_by_their_means(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file, fit_on="both", corpus=_corpus(corpus_file, weight=0.25, max_rows=800))
    data.prepare_corpus()
    data.setup("fit")
    model = LCross(_T(data), fit_on="both", corpus_weight=0.25)
    assert model.transform.bias is not None  # token states take an intercept by default
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    # the independent reference: stack the rows, scale each source by sqrt(its weight / its rows), centre the corpus
    xs_c = torch.cat([data.corpus.load_shard(s)[0][:, 0] for s in data.corpus.plan().shards]).double()
    xt_c = torch.cat([data.corpus.load_shard(s)[1][:, 0] for s in data.corpus.plan().shards]).double()
    xs_d, xt_d = (t[:, 0].double() for t in data.tensors("train"))
    a, b = (0.25 / len(xs_c)) ** 0.5, (0.75 / len(xs_d)) ** 0.5
    xs = torch.cat([a * (xs_c - xs_c.mean(0)), b * xs_d])
    xt = torch.cat([a * (xt_c - xt_c.mean(0)), b * xt_d])
    expected = torch.linalg.lstsq(xs, xt, driver="gelsd").solution
    start = LCross(_T(data), fit_on="both", corpus_weight=0.25)
    start.trainer = trainer  # the closed form alone, without the training step
    start.on_fit_start()  # the closed-form start of the data module's corpus and deltas
    torch.testing.assert_close(start.transform.matrix().double(), expected, atol=1e-4, rtol=1e-4)
    intercept = xt_c.mean(0) - xs_c.mean(0) @ expected
    torch.testing.assert_close(start.transform.bias.double(), intercept, atol=1e-4, rtol=1e-4)
    assert model.card()["fit_on"] == "both" and model.card()["corpus"]["rows"] == 800


@pytest.mark.parametrize(
    ("fit_on", "corpus", "weight", "message"),
    [
        ("corpus", None, 0.5, "no corpus is given"),
        ("deltas", "x", 0.5, "would be read and never used"),
        ("both", "x", 1.0, "data.corpus.weight: weight is 1.0"),
        ("corpora", "x", 0.5, "corpora"),
    ],
)
def test_corpus_settings_that_would_fail_silently_are_refused(tmp_path, corpus_file, fit_on, corpus, weight, message):
    with pytest.raises(LCrossInputError, match=message):
        source = None if corpus is None else CorpusSettings(path=str(corpus_file), weight=weight)
        _data(tmp_path, corpus_file, fit_on=fit_on, corpus=source)


def test_cli_fits_on_both_sources_and_the_checkpoint_loads_back_as_an_affine_t(tmp_path, corpus_file):
    from lcross import LinearTransform, load_transform
    from tests.conftest import fit_tiny

    fit_tiny(
        tmp_path,
        "--data.fit_on=both",
        f"--data.corpus.path={corpus_file}",
        "--data.corpus.max_rows=600",
        "--data.corpus.shard_rows=250",
        "--data.corpus.batch_size=100",
        "--trainer.max_epochs=2",
        "--generation=null",
    )
    run = tmp_path / "logs" / "tiny" / "version_0"
    transform = load_transform(run / "checkpoints" / "last.ckpt")
    assert isinstance(transform, LinearTransform) and transform.bias is not None
    card = load_transform(run / "transform").card
    assert card["fit_on"] == "both" and card["corpus_weight"] == 0.5
    assert card["corpus"]["rows"] == 600 and card["corpus"]["path"] == str(corpus_file)
    assert "token states and deltas" in card["fit_method"]
    # a steering vector is a difference: it goes through W alone, never the intercept
    vector = torch.randn(32)
    torch.testing.assert_close(transform.transfer(vector), vector @ transform.matrix())


def test_corpus_families_join_the_cross_validation():
    from lcross.training.crossval import crossvalidate
    from lcross.training.families import CORPUS_FAMILIES, families_named
    from lcross.transform.sufficient_stats import GramStats

    generator = torch.Generator().manual_seed(0)
    true_map = torch.randn(6, 5, generator=generator)
    corpus_x = torch.randn(500, 6, generator=generator) + 3.0  # token states have a mean
    corpus = GramStats.empty(6, 5)
    corpus.update(corpus_x, corpus_x @ true_map + 1.0 + 0.01 * torch.randn(500, 5, generator=generator))
    rows = {}
    for name in "abcd":
        xs = torch.randn(12, 6, generator=generator) + 2 * torch.randn(6, generator=generator)  # a concept direction
        rows[name] = (xs, xs @ true_map + 0.1 * torch.randn(12, 5, generator=generator))
    results = crossvalidate(rows, CORPUS_FAMILIES, inner_folds=2, corpus=corpus)
    assert len(results) == 4 * len(CORPUS_FAMILIES)
    alone = [r.transform for r in results if r.family == "corpus_lstsq"]
    assert all(torch.equal(t.matrix(), alone[0].matrix()) for t in alone)  # no concept data: one T for every fold
    torch.testing.assert_close(alone[0].matrix(), true_map, atol=0.01, rtol=0.01)
    torch.testing.assert_close(alone[0].bias, torch.full((5,), 1.0), atol=0.05, rtol=0.05)
    assert all(r.cos > 0.9 for r in results)
    assert {r.setting["corpus_weight"] for r in results if r.family == "corpus+deltas"} <= {0.1, 0.5, 0.9}
    with pytest.raises(LCrossInputError, match="fit T on a corpus, and the config has none"):
        families_named(["lstsq", "corpus_ridge"])
    assert [f.name for f in families_named(None, corpus=True)][-3:] == [f.name for f in CORPUS_FAMILIES]


def test_a_passage_longer_than_a_models_context_is_refused_before_any_weights_load(tmp_path, corpus_file):
    long_text = tmp_path / "long.txt"
    long_text.write_text("word " * 300, encoding="utf-8")  # 1500 bytes: 1500 tokens of the byte tokenizer
    data = _data(
        tmp_path,
        corpus_file,
        source=ModelSpec("tiny-gpt2"),  # 512 learned positions
        corpus=_corpus(long_text, passage_chars=1500),
    )
    with pytest.raises(LCrossInputError, match=r"passage 0 of the corpus .* over its limit of 512.*passage_chars"):
        data.prepare_corpus()
    assert data.store.loaded() == []


def test_a_missing_corpus_is_named_before_any_extraction(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file, corpus=CorpusSettings(path="./no/such/corpus.txt"))
    with pytest.raises(LCrossInputError, match="no such file or folder './no/such/corpus.txt'"):
        data.prepare_corpus()
    assert data.store.loaded() == [] and not list((tmp_path / "cache").glob("*.safetensors"))


def test_commands_that_need_deltas_only_never_read_the_corpus(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file)
    data.prepare_data()  # outside a Trainer's fit: predict, generate, report
    assert data.corpus._plan is None


def test_a_model_that_disagrees_with_the_data_about_its_rows_is_refused(tmp_path, corpus_file):
    data = _data(tmp_path, corpus_file, fit_on="both", corpus=_corpus(corpus_file, weight=0.1, max_rows=300))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    for model, message in (
        (LCross(_T(data)), "serves 'both'"),
        (
            LCross(_T(data), fit_on="both", corpus_weight=0.9),
            "weighs the corpus 0.9, the data module 0.1",
        ),
    ):
        with pytest.raises(LCrossInputError, match=message):
            trainer.fit(model, datamodule=data)


def test_fitting_on_the_corpus_alone_needs_no_training_concept(tmp_path, corpus_file):
    data = _data(
        tmp_path,
        corpus_file,
        concepts={"sentiment": "data/demo/sentiment", "size": "data/demo/size"},
        val_concepts=["sentiment"],
        test_concepts=["size"],
        corpus=_corpus(corpus_file, max_rows=300),
    )
    model = LCross(_T(data), fit_on="corpus")
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False).fit(model, data)
    assert data.train_concepts == [] and data.describe()["n_train_rows"] == 0
    with pytest.raises(LCrossInputError, match="none is left to train T"):
        _data(tmp_path, corpus_file, fit_on="both", concepts={"sentiment": "data/demo/sentiment"})


def test_streamed_batches_weigh_every_row_alike(tmp_path, corpus_file):
    from lcross.corpus.rows import CorpusRows

    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1000))
    data.prepare_corpus()
    rows = CorpusRows(data.corpus, batch_size=300)
    batches = list(rows)
    assert len(batches) == len(rows) and sum(len(b[0]) for b in batches) == 1000
    # scale = rows / mean batch rows: a pass's sum of scaled batch means is the mean over all rows, times len
    for xs, _, scale in batches:
        assert float(scale) == pytest.approx(len(xs) * len(rows) / 1000)
    assert [len(b[0]) for b in batches] != [len(b[0]) for b in rows]  # a new order every pass


class _BatchLog(L.Callback):
    """Records, per epoch, a fingerprint of every corpus batch a fit trains on."""

    def __init__(self):
        self.seen: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, []).append(float(batch["corpus"][0].double().sum()))


def test_a_resumed_fit_streams_the_batches_an_uninterrupted_fit_would(tmp_path, corpus_file):
    def fit(epochs: int, resume=None):
        data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1000, batch_size=300))
        model = LCross(_T(data), fit_on="corpus", init="random")
        log = _BatchLog()
        trainer = L.Trainer(
            max_epochs=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            default_root_dir=tmp_path,
            callbacks=[log],
        )
        trainer.fit(model, datamodule=data, ckpt_path=resume)
        return trainer, log.seen

    _, whole = fit(3)
    first, _ = fit(1)
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    _, resumed = fit(3, resume=tmp_path / "epoch1.ckpt")
    assert sorted(resumed) == [1, 2]
    assert resumed[1] == whole[1] and resumed[2] == whole[2]
    assert whole[1] != whole[2]  # a new order every pass


def test_each_passage_is_tokenised_once_per_model(tmp_path, corpus_file, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    from lcross.corpus.passages import iter_passages

    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=100_000))
    passages = set(iter_passages(data.corpus.settings))
    calls: list[str] = []
    real = PreTrainedTokenizerBase.__call__

    def counting(self, text=None, *args, **kwargs):
        for t in [text] if isinstance(text, str) else list(text or []):
            if isinstance(t, str) and t in passages:
                calls.append(t)
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting)
    data.corpus.plan()
    assert sorted(calls) == sorted(2 * list(passages))  # planning: once by each model's tokenizer
    calls.clear()
    data.prepare_corpus()  # extraction feeds the plan's token ids to the models
    assert calls == [] and not data.corpus.missing("source") and not data.corpus.missing("target")


def test_a_stream_restarted_within_an_epoch_gets_a_new_order(tmp_path, corpus_file):
    from lcross.corpus.rows import CorpusRows

    data = _data(tmp_path, corpus_file, corpus=_corpus(corpus_file, max_rows=1000))
    data.prepare_corpus()

    def orders(epochs):
        epoch = iter(epochs)
        now = [0]
        rows = CorpusRows(data.corpus, batch_size=300, epoch=lambda: now[0])
        out = []
        for e in epochs:
            now[0] = e
            out.append([float(b[0].double().sum()) for b in rows])
        del epoch
        return out

    within = orders([0, 0, 1])  # a CombinedLoader cycling the corpus twice in epoch 0, then epoch 1
    assert within[0] != within[1]  # the restart does not repeat the order
    assert orders([0])[0] == within[0] and orders([1])[0] == within[2]  # an epoch's first pass depends on it alone
