"""Input and target transforms: what an objective makes of the chunk given its noise mask (T5's ``denoise``).

Every transform is ``fn(tokens int32 (n,), noise_mask bool (n,), vocab, rng) -> int32 (m,)``; EOS is added
by the objective afterwards. The examples below use ``SimpleVocab(200)`` (sentinels 199, 198, ...), the
chunk ``[10, 11, 12, 13, 14, 15]`` and the mask ``[F, T, T, F, T, F]``.

Input transforms: ``noise_span_to_unique_sentinel``, ``noise_token_to_sentinel``, ``drop_noise_tokens``,
``permute_noise_tokens``, ``noise_token_to_random_token``, ``noise_token_to_random_token_or_sentinel``.
Target transforms: ``nonnoise_span_to_unique_sentinel``, ``drop_nonnoise_tokens``, ``full_sequence``.
"""

from __future__ import annotations

import numpy as np

from t5lit.objectives.base import ConfigError, VocabLike, check_sentinels

# T5 never draws pad 0, EOS 1 or unk 2 as a random token (num_reserved_tokens=3).
NUM_RESERVED_TOKENS = 3


# What to do with more noise runs than the vocabulary has extra ids (``surplus_sentinels``):
#   "error":      refuse (``check_sentinels``): every sentinel is an extra id, as the paper describes them.
#   "vocabulary": T5's code. Its noise_span_to_unique_sentinel numbers the runs down from the last id with no bound
#                 (``sentinel_id(vocabulary) + 1 - cumsum(first_noise_tokens)``, t5/data/preprocessors.py: "we
#                 appropriate the last tokens in the vocabulary for additional use as sentinels"), so with its
#                 100 extra ids the 101st run got id vocab_size - 101: the last ordinary piece, then the one
#                 before it, and so on. i.i.d. noise at 25% and 50% on 511 tokens makes ~96 and ~128 runs.
SURPLUS_SENTINELS = ("error", "vocabulary")


def unique_sentinels(count: int, vocab: VocabLike, surplus: str = "error") -> np.ndarray:
    """The ids of ``count`` unique sentinels in order: ``<extra_id_0>``, ``<extra_id_1>``, ... counting down from
    the last id; past the extra ids, ``surplus="vocabulary"`` goes on counting down into the ordinary pieces
    (T5's behaviour, above) and ``"error"`` refuses. ``SimpleVocab(200, num_extra_ids=2)``, 3, "vocabulary" ->
    ``[199, 198, 197]`` (197 is an ordinary piece)."""
    if surplus == "error" or count <= vocab.num_extra_ids:
        check_sentinels(count, vocab)
    elif vocab.vocab_size - count < NUM_RESERVED_TOKENS:
        raise ConfigError(f"this example needs {count} sentinels; counting down from the last id they would reach "
                          f"the reserved ids (pad, EOS, unk) of a vocabulary of {vocab.vocab_size} ids")
    return np.int32(vocab.sentinel_id(0)) - np.arange(count, dtype=np.int32)


def noise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                                  rng: np.random.Generator | None = None, surplus: str = "error") -> np.ndarray:
    """Each run of noise becomes one sentinel, numbered from <extra_id_0> in order of appearance
    (``surplus``: see ``unique_sentinels``).

    ``[10, 11, 12, 13, 14, 15] -> [10, 199, 13, 198, 15]``.
    """
    prev = np.concatenate(([False], noise_mask[:-1]))  # (n,) previous token was noise
    first = noise_mask > prev  # (n,) first token of each noise run
    number = np.cumsum(first, dtype=np.int32)  # (n,) 1-based run number
    if number.shape[0]:
        unique_sentinels(int(number[-1]), vocab, surplus)  # checks the count
    out = np.where(first, np.int32(vocab.sentinel_id(0) + 1) - number, tokens)
    return out[~(noise_mask & prev)]


def nonnoise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                                     rng: np.random.Generator | None = None, surplus: str = "error") -> np.ndarray:
    """Each run of non-noise becomes one sentinel, the noise stays: ``-> [199, 11, 12, 198, 14, 197]``.

    With a mask that starts with non-noise (random spans always do) the i-th sentinel here precedes the
    tokens that the i-th sentinel of ``noise_span_to_unique_sentinel`` replaced.
    """
    return noise_span_to_unique_sentinel(tokens, ~noise_mask, vocab, surplus=surplus)


def noise_token_to_sentinel(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Every noise token becomes the one mask token <extra_id_0>: ``-> [10, 199, 199, 13, 199, 15]``."""
    check_sentinels(1, vocab)
    return np.where(noise_mask, np.int32(vocab.sentinel_id(0)), tokens).astype(np.int32, copy=False)


def drop_noise_tokens(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """``-> [10, 13, 15]``."""
    return tokens[~noise_mask]


def drop_nonnoise_tokens(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """``-> [11, 12, 14]``."""
    return tokens[noise_mask]


def full_sequence(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """The original chunk (T5's ``targets_fn=None``): ``-> [10, 11, 12, 13, 14, 15]``."""
    return tokens


def permute_noise_tokens(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                         rng: np.random.Generator) -> np.ndarray:
    """The noise tokens shuffled among the noise positions, the rest in place: ``-> [10, 14, 11, 13, 12, 15]``
    (rng 0)."""
    out = tokens.copy()
    out[noise_mask] = rng.permutation(tokens[noise_mask])
    return out


def _random_tokens(vocab: VocabLike, rng: np.random.Generator, size: int) -> np.ndarray:
    # Uniform over the ordinary pieces [3, vocab_size - num_extra_ids). T5 also draws the extra ids; we keep
    # sentinels out so that a "random token" is never a mask token.
    return rng.integers(NUM_RESERVED_TOKENS, vocab.vocab_size - vocab.num_extra_ids, size=size, dtype=np.int32)


def noise_token_to_random_token(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                                rng: np.random.Generator) -> np.ndarray:
    """Every noise token becomes a random ordinary token: ``-> [10, 85, 64, 13, 52, 15]`` (rng 0)."""
    out = tokens.copy()
    out[noise_mask] = _random_tokens(vocab, rng, int(noise_mask.sum()))
    return out


def noise_token_to_random_token_or_sentinel(tokens: np.ndarray, noise_mask: np.ndarray, vocab: VocabLike,
                                            rng: np.random.Generator, random_prob: float = 0.1) -> np.ndarray:
    """Each noise token becomes a random token with probability ``random_prob``, else <extra_id_0>
    (the paper's BERT-style objective, Section 3.3.1): ``-> [10, 199, 51, 13, 199, 15]`` (rng 0)."""
    use_random = noise_mask & (rng.random(tokens.shape[0]) < random_prob)  # (n,)
    out = noise_token_to_sentinel(tokens, noise_mask, vocab)
    out[use_random] = _random_tokens(vocab, rng, int(use_random.sum()))
    return out
