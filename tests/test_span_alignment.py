"""Pairing the tokens of two tokenizers on one text: hand-built tokenizers whose every split is known, expected pairs
written out by hand, and the real demo tokenizers (slow)."""

from __future__ import annotations

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from lcross.corpus.alignment import align, aligned_positions, token_ends
from lcross.errors import LCrossInputError

WORDS_TEXT = "the unbelievable cats sat."
# c a f é ␠ 🙂 ␠ 日 本 語 . \n \n ␠ ␠ o k: 17 characters; é, 🙂, 日, 本, 語 are 2, 4, 3, 3, 3 bytes in UTF-8
UNICODE_TEXT = "caf\u00e9 \U0001f642 \u65e5\u672c\u8a9e.\n\n  ok"


def _tokens(tokenizer, text: str) -> list[tuple[str, tuple[int, int]]]:
    encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    return list(zip(tokenizer.convert_ids_to_tokens(encoded.input_ids), map(tuple, encoded.offset_mapping)))


@pytest.fixture(scope="module")
def words():
    """Whole words (split at whitespace and punctuation, spaces not in any token), with a BOS token."""
    vocab = {w: i for i, w in enumerate(["[UNK]", "<s>", "the", "unbelievable", "cats", "sat", "."])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="[UNK]")


@pytest.fixture(scope="module")
def pieces():
    """Word pieces with a leading-space marker ("▁un": its offsets include the space), no BOS."""
    vocab = ["[UNK]", "▁the", "▁un", "##believ", "##able", "▁cat", "##s", "▁sat", "##."]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _byte_bpe(merges: list[tuple[str, str]], pre_tokenizer, bos: str | None = None) -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    if bos is None:
        return PreTrainedTokenizerFast(tokenizer_object=tok)
    tok.add_special_tokens([bos])
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos)


@pytest.fixture(scope="module")
def gpt_bytes():
    """Byte-level BPE with GPT-2's pre-tokenizer (a space starts a word; "\\n\\n " is one piece), no BOS."""
    merges = [("c", "a"), ("ca", "f"), ("Ã", "©"), ("caf", "Ã©")]  # café whole
    merges += [("ð", "Ł"), ("Ļ", "Ĥ")]  # 🙂 (4 bytes) as 2 + 2 bytes
    merges += [("æ", "Ĺ"), ("æĹ", "¥"), ("è", "ª"), ("èª", "ŀ")]  # 日 and 語 whole, 本 as its 3 bytes
    merges += [("Ċ", "Ċ"), ("ĊĊ", "Ġ"), ("Ġ", "o"), ("Ġo", "k")]  # "\n\n " and " ok"
    return _byte_bpe(merges, pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False))


@pytest.fixture(scope="module")
def split_bytes():
    """Byte-level BPE with every whitespace character a token of its own, and a BOS token."""
    merges = [("c", "a"), ("f", "Ã")]  # café as "ca", "f" + é's first byte, é's second byte
    merges += [("ð", "Ł"), ("Ļ", "Ĥ"), ("ðŁ", "ĻĤ")]  # 🙂 whole
    merges += [("æ", "ľ"), ("æľ", "¬"), ("è", "ª"), ("èª", "ŀ"), ("èªŀ", ".")]  # 日 as bytes, 本 whole, "語."
    merges += [("o", "k")]
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return _byte_bpe(merges, pre, bos="<|bos|>")


def test_the_hand_tokenizers_split_as_designed(words, pieces, gpt_bytes, split_bytes):
    """The premise of the hand cases below: how each tokenizer splits the two texts."""
    assert _tokens(words, WORDS_TEXT) == [
        ("<s>", (0, 0)), ("the", (0, 3)), ("unbelievable", (4, 16)), ("cats", (17, 21)), ("sat", (22, 25)),
        (".", (25, 26)),
    ]  # fmt: skip
    assert _tokens(pieces, WORDS_TEXT) == [
        ("▁the", (0, 3)), ("▁un", (3, 6)), ("##believ", (6, 12)), ("##able", (12, 16)), ("▁cat", (16, 20)),
        ("##s", (20, 21)), ("▁sat", (21, 25)), ("##.", (25, 26)),
    ]  # fmt: skip
    assert _tokens(gpt_bytes, UNICODE_TEXT) == [
        ("cafÃ©", (0, 4)), ("Ġ", (4, 5)), ("ðŁ", (5, 6)), ("ĻĤ", (5, 6)), ("Ġ", (6, 7)), ("æĹ¥", (7, 8)),
        ("æ", (8, 9)), ("ľ", (8, 9)), ("¬", (8, 9)), ("èªŀ", (9, 10)), (".", (10, 11)), ("ĊĊĠ", (11, 14)),
        ("Ġok", (14, 17)),
    ]  # fmt: skip
    assert _tokens(split_bytes, UNICODE_TEXT) == [
        ("<|bos|>", (0, 0)), ("ca", (0, 2)), ("fÃ", (2, 4)), ("©", (3, 4)), ("Ġ", (4, 5)), ("ðŁĻĤ", (5, 6)),
        ("Ġ", (6, 7)), ("æ", (7, 8)), ("Ĺ", (7, 8)), ("¥", (7, 8)), ("æľ¬", (8, 9)), ("èªŀ.", (9, 11)),
        ("Ċ", (11, 12)), ("Ċ", (12, 13)), ("Ġ", (13, 14)), ("Ġ", (14, 15)), ("ok", (15, 17)),
    ]  # fmt: skip


def test_token_ends_mark_bos_and_tokens_that_do_not_complete_their_characters(gpt_bytes, split_bytes, words):
    ids, ends = token_ends(words, WORDS_TEXT)
    assert ids == [1, 2, 3, 4, 5, 6]
    assert ends == [None, 3, 16, 21, 25, 26]  # BOS reads no text
    _, ends = token_ends(gpt_bytes, UNICODE_TEXT)
    # "ðŁ" ends where "ĻĤ" (the rest of 🙂) ends but "ĻĤ" starts before that; likewise 本's first two bytes
    assert ends == [4, 5, None, 6, 7, 8, None, None, 9, 10, 11, 14, 17]
    _, ends = token_ends(split_bytes, UNICODE_TEXT)
    # "fÃ" holds f and é's first byte (offsets 2..4): "©" still covers character 3
    assert ends == [None, 2, None, 4, 5, 6, 7, None, None, 8, 9, 11, 12, 13, 14, 15, 17]


def test_a_word_whole_in_one_tokenizer_and_split_one_two_three_ways_in_the_other(words, pieces):
    """The word "the" whole in both, "cats" as cat+s, "unbelievable" as un+believ+able; the pieces' leading spaces
    don't matter, and BOS (in ``words`` only) is never paired."""
    result = align(words, pieces, WORDS_TEXT)
    # ends 3 (the), 16 (unbelievable), 21 (cats), 25 (sat), 26 (.)
    assert result.pairs == [(1, 0), (2, 3), (3, 5), (4, 6), (5, 7)]
    assert result.kept_a == 1.0  # 5 of the 5 words (BOS is not counted)
    assert result.kept_b == 5 / 8
    assert result.ids_a == [1, 2, 3, 4, 5, 6] and len(result.ids_b) == 8
    assert align(pieces, words, WORDS_TEXT).pairs == [(0, 1), (3, 2), (5, 3), (6, 4), (7, 5)]


def test_unicode_byte_splits_and_whitespace_runs(gpt_bytes, split_bytes):
    """é, 🙂, 日 and 本 split into byte tokens in one tokenizer only, 語. and "\\n\\n " merged in one only."""
    result = align(gpt_bytes, split_bytes, UNICODE_TEXT)
    assert result.pairs == [
        (0, 3),  # "café" | "ca" "fÃ" "©": end 4
        (1, 4),  # " ": end 5
        (3, 5),  # "ðŁ" "ĻĤ" | "ðŁĻĤ" (🙂): end 6
        (4, 6),  # " ": end 7
        (5, 9),  # "æĹ¥" | "æ" "Ĺ" "¥" (日): end 8
        (8, 10),  # "æ" "ľ" "¬" | "æľ¬" (本): end 9
        # end 10 (語) is no boundary of split_bytes, which reads "語." as one token
        (10, 11),  # ".": end 11
        (11, 14),  # "\n\n " | "\n" "\n" " ": end 14; split_bytes' ends 12, 13 and 15 have no partner
        (12, 16),  # " ok" | " " "ok": end 17
    ]
    assert result.kept_a == 9 / 13
    assert result.kept_b == 9 / 16  # of the 16 tokens after BOS


def test_skip_first_drops_the_first_pairs_of_the_text(gpt_bytes, split_bytes):
    assert align(gpt_bytes, split_bytes, UNICODE_TEXT, skip_first=7).pairs == [(11, 14), (12, 16)]
    result = align(gpt_bytes, split_bytes, UNICODE_TEXT, skip_first=20)
    assert result.pairs == [] and result.kept_a == 0.0
    with pytest.raises(LCrossInputError, match=r"skip_first: skip_first is -1"):
        aligned_positions([1], [1], skip_first=-1)


def test_aligned_positions_on_ends_alone():
    # A: ends 2 shared by two tokens (only the second counts), 5 likewise; B: no BOS
    assert aligned_positions([None, 2, 2, 5, 5, 9], [2, 4, 5, 9, 9]) == [(2, 0), (4, 2), (5, 4)]
    assert aligned_positions([None, 2, 2, 5, 5, 9], [2, 4, 5, 9, 9], skip_first=1) == [(4, 2), (5, 4)]
    # A's 7 is followed by a smaller end and its 5 comes after 7: neither is a prefix read
    assert aligned_positions([3, 7, 5, 9], [3, 5, 7, 9]) == [(0, 0), (3, 3)]
    # an end of 0 has read nothing
    assert aligned_positions([0, 4], [0, 4]) == [(1, 1)]
    assert aligned_positions([], [1, 2]) == []


def test_a_special_token_named_in_the_text_is_read_as_text(words, pieces):
    result = align(words, pieces, "the <s> cats")
    assert result.ids_a.count(1) == 1  # only the BOS the tokenizer adds; "<s>" in the text is "<", "s", ">"
    # words: "the" "<" "s" ">" "cats" (ends 3, 5, 6, 7, 12); pieces: "▁the" "▁<s>" (unknown) "▁cat" "##s" (3, 7, 11, 12)
    assert result.pairs == [(1, 0), (4, 1), (5, 3)]


def test_empty_text(words, pieces):
    result = align(words, pieces, "")
    assert result.pairs == [] and result.kept_a == 0.0 and result.kept_b == 0.0


def test_a_slow_tokenizer_is_refused():
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(LCrossInputError, match=r"SlowTokenizer is a slow tokenizer: it gives no character offsets"):
        token_ends(SlowTokenizer(), "text")


# -- the real demo tokenizers -------------------------------------------------------------------------------------

PLAIN_ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "In 2023, researchers at the university published a study on climate change and its effects on agriculture.",
    "She didn't know whether to laugh or cry; the situation was absurd, yet strangely familiar.",
    "Photosynthesis converts light energy into chemical energy, storing it in glucose molecules.",
    "The committee's decision, announced on Tuesday, surprised almost everyone who had followed the debate.",
]
HARDER = "Café naïve — 日本語 🙂 ꙮ \U0001d538x\n\n  two  spaces\tand tabs, <bos> and e\u0301."


@pytest.fixture(scope="module")
def demo_tokenizers():
    from lcross.models.loading import ModelSpec
    from lcross.models.packaged import packaged_gguf

    names = ("HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m")
    if any(packaged_gguf(name) is None for name in names):
        pytest.skip("the offline demo models are not installed (see README)")
    return tuple(ModelSpec(name).tokenizer() for name in names)


@pytest.mark.slow
def test_real_tokenizers_pair_positions_where_both_have_read_the_same_prefix(demo_tokenizers):
    smol, gemma = demo_tokenizers
    paired = tokens_a = tokens_b = 0
    for text in [*PLAIN_ENGLISH, HARDER]:
        result = align(smol, gemma, text)
        _, ends_a = token_ends(smol, text)
        _, ends_b = token_ends(gemma, text)
        assert result.pairs
        for i, j in result.pairs:
            end = ends_a[i]
            assert end is not None and ends_b[j] == end
            # what each model has read up to the paired token is exactly the text up to that character
            assert smol.decode(result.ids_a[: i + 1], skip_special_tokens=True) == text[:end]
            assert gemma.decode(result.ids_b[: j + 1], skip_special_tokens=True) == text[:end]
        print(f"kept {result.kept_a:.3f} of SmolLM2's, {result.kept_b:.3f} of Gemma's tokens: {text[:40]!r}")
        if text in PLAIN_ENGLISH:
            assert result.kept_a > 0.8 and result.kept_b > 0.8
            paired += len(result.pairs)
            tokens_a += len(smol(text, add_special_tokens=False).input_ids)
            tokens_b += len(gemma(text, add_special_tokens=False).input_ids)
    print(f"plain English: kept {paired / tokens_a:.3f} of SmolLM2's, {paired / tokens_b:.3f} of Gemma's tokens")
    assert gemma(HARDER).input_ids[0] == gemma.bos_token_id and smol(HARDER).input_ids[0] != smol.bos_token_id
