"""Input and target transforms: golden arrays on the chunk 10..15 with the mask [F, T, T, F, T, F]."""

import numpy as np
import pytest

from t5lit.objectives.base import ConfigError, SimpleVocab, append_eos
from t5lit.objectives.transforms import (
    drop_noise_tokens,
    drop_nonnoise_tokens,
    full_sequence,
    noise_span_to_unique_sentinel,
    noise_token_to_random_token,
    noise_token_to_random_token_or_sentinel,
    noise_token_to_sentinel,
    nonnoise_span_to_unique_sentinel,
    permute_noise_tokens,
)

VOCAB = SimpleVocab(200)
TOKENS = np.arange(10, 16, dtype=np.int32)
MASK = np.array([0, 1, 1, 0, 1, 0], dtype=bool)


def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("fn,expected", [
    (noise_span_to_unique_sentinel, [10, 199, 13, 198, 15]),
    (nonnoise_span_to_unique_sentinel, [199, 11, 12, 198, 14, 197]),
    (noise_token_to_sentinel, [10, 199, 199, 13, 199, 15]),
    (drop_noise_tokens, [10, 13, 15]),
    (drop_nonnoise_tokens, [11, 12, 14]),
    (full_sequence, [10, 11, 12, 13, 14, 15]),
    (permute_noise_tokens, [10, 14, 11, 13, 12, 15]),
    (noise_token_to_random_token, [10, 85, 64, 13, 52, 15]),
    (noise_token_to_random_token_or_sentinel, [10, 199, 51, 13, 199, 15]),
])
def test_golden(fn, expected):
    out = fn(TOKENS, MASK, VOCAB, rng())
    assert out.dtype == np.int32 and out.tolist() == expected
    assert TOKENS.tolist() == [10, 11, 12, 13, 14, 15]  # the chunk is never modified in place


def test_mask_starting_with_noise_numbers_runs_in_order():
    mask = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    assert noise_span_to_unique_sentinel(TOKENS, mask, VOCAB).tolist() == [199, 12, 198, 14, 15]
    assert nonnoise_span_to_unique_sentinel(TOKENS, mask, VOCAB).tolist() == [10, 11, 199, 13, 198]


def test_random_tokens_avoid_special_ids_and_sentinels():
    mask = np.ones(5000, dtype=bool)
    out = noise_token_to_random_token(np.full(5000, 7, np.int32), mask, VOCAB, rng())
    assert out.min() >= 3 and out.max() < 100  # [3, vocab_size - num_extra_ids)
    mixed = noise_token_to_random_token_or_sentinel(np.full(5000, 7, np.int32), mask, VOCAB, rng())
    share_random = np.mean(mixed != 199)
    assert 0.08 < share_random < 0.12  # BERT-style: 10% random, 90% the mask token


def test_too_few_extra_ids_names_the_need():
    small = SimpleVocab(200, num_extra_ids=1)
    with pytest.raises(ConfigError, match="needs 2 sentinels .* has 1 extra ids"):
        noise_span_to_unique_sentinel(TOKENS, MASK, small)
    with pytest.raises(ConfigError, match="needs 1 sentinels"):
        noise_token_to_sentinel(TOKENS, MASK, SimpleVocab(200, num_extra_ids=0))


def test_append_eos():
    assert append_eos(np.array([5, 6], np.int32), VOCAB).tolist() == [5, 6, 1]
    assert append_eos(np.zeros(0, np.int32), VOCAB).tolist() == [1]
