from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from lcross.models.prompting import encode


def _merging_tokenizer():
    """A BPE tokenizer in which 'a' + 'b' merge into 'ab': the prompt 'xa' and completion 'b' share no boundary."""
    vocab = {"x": 0, "a": 1, "b": 2, "ab": 3, "<eos>": 4}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<eos>")


def test_a_completion_that_merges_into_the_prompt_is_read_from_the_last_shared_token():
    tokenizer = _merging_tokenizer()
    assert tokenizer("xa").input_ids == [0, 1] and tokenizer("xab").input_ids == [0, 3]
    encoded = encode(tokenizer, "xa", "b")
    assert encoded.input_ids == [0, 3]  # exactly what tokenizer(prompt + completion) gives
    assert encoded.prompt_len == 1  # 'x' is the prompt part both share; 'ab' belongs to the completion


def test_a_completion_that_merges_entirely_keeps_one_position_to_read_from():
    tokenizer = _merging_tokenizer()
    encoded = encode(tokenizer, "a", "b")  # 'ab' is one token: nothing of the prompt survives on its own
    assert encoded.input_ids == [3] and encoded.prompt_len == 1  # the last token, 'ab', is where the state is read


def test_no_merge_splits_at_the_boundary():
    tokenizer = _merging_tokenizer()
    encoded = encode(tokenizer, "xb", "a")
    assert encoded.input_ids == [0, 2, 1] and encoded.prompt_len == 2
