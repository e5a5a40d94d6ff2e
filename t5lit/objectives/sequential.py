"""Objectives that keep the text in order on one side: deshuffling, prefix LM and plain LM (paper Section
3.3.1: examples in Table 3, scores in Table 4; Section 3.2.3 and Table 2 for the LM objectives across
architectures).

Worked examples use ``SimpleVocab(200)``, the chunk ``tokens = 10..19`` (``np.arange(10, 20, dtype=np.int32)``)
and ``rng = np.random.default_rng(0)``.
"""

from __future__ import annotations

import numpy as np

from t5lit.objectives.base import (
    Budget,
    VocabLike,
    append_eos,
    as_tokens,
    check_fraction,
    register_objective,
)
from t5lit.objectives.denoising import denoise
from t5lit.objectives.noise import iid_noise_mask, random_prefix_noise_mask
from t5lit.objectives.transforms import drop_noise_tokens, drop_nonnoise_tokens, full_sequence, permute_noise_tokens


def _check_deshuffle(noise_density: float = 1.0, **_) -> None:
    check_fraction("noise_density", noise_density, closed_high=True)


@register_objective("deshuffle", check=_check_deshuffle)
def deshuffle(tokens: np.ndarray, rng: np.random.Generator, vocab: VocabLike, noise_density: float = 1.0) -> dict:
    """Deshuffling (example in Table 3; scored in Table 4): inputs are the chunk's tokens shuffled, targets the
    original chunk.

    ``noise_density`` < 1 shuffles only an i.i.d. fraction of the positions among themselves.
    ``tokens`` 10..19, rng 0 -> inputs ``[14 16 12 17 13 15 19 10 18 11 1]``, targets ``[10 11 ... 19 1]``.
    """
    tokens = as_tokens(tokens)
    n = tokens.shape[0]
    mask = np.ones(n, np.bool_) if noise_density >= 1.0 else iid_noise_mask(n, noise_density, rng)
    return denoise(tokens, rng, vocab, mask, permute_noise_tokens, full_sequence)


def _check_prefix(noise_density: float = 0.5, **_) -> None:
    check_fraction("noise_density", noise_density, 0.0, 0.5, closed_high=True)


def prefix_targets_length(n: int, noise_density: float) -> int:
    """Longest targets (EOS included) of ``prefix_lm`` on ``n`` tokens: the shortest prefix leaves the most."""
    min_prefix = min(n - 1, max(1, int(round((1 - 2 * noise_density) * (n - 1)))))
    return n - min_prefix + 1


def _prefix_lengths(inputs_length: int, noise_density: float) -> Budget:
    # The prefix keeps at least one token for the targets, so a chunk of inputs_length tokens gives inputs of
    # at most inputs_length (prefix + EOS). T5 uses inputs_length - 1 (split_tokens_to_inputs_length). Every
    # example holds the whole chunk plus two EOS.
    return Budget(inputs_length, inputs_length, prefix_targets_length(inputs_length, noise_density), inputs_length + 2)


@register_objective("prefix_lm", budget=_prefix_lengths, check=_check_prefix)
def prefix_lm(tokens: np.ndarray, rng: np.random.Generator, vocab: VocabLike, noise_density: float = 0.5) -> dict:
    """Prefix language modeling (example in Table 3; scored in Table 4; Table 2's LM objective): split the chunk
    at a random point; inputs are the prefix, targets the rest. With the default 0.5 the prefix length is
    uniform in [1, n - 1] (T5's random_prefix_noise_mask);
    a smaller ``noise_density`` is the expected fraction left for the targets (UL2's S-denoiser uses 0.25).

    ``tokens`` 10..19, rng 0 -> inputs ``[10 11 12 13 14 15 16 17 1]``, targets ``[18 19 1]``.
    """
    tokens = as_tokens(tokens)
    mask = random_prefix_noise_mask(tokens.shape[0], noise_density, rng)  # True on the prefix
    return denoise(tokens, rng, vocab, mask, drop_nonnoise_tokens, drop_noise_tokens)


def _lm_budget(inputs_length: int) -> Budget:
    # No inputs part: the whole sequence is targets, a chunk of inputs_length - 1 tokens plus EOS (the
    # decoder-only LM of Section 3.2.3, whose row then holds targets only, all of them in the loss).
    return Budget(inputs_length - 1, 0, inputs_length)


@register_objective("lm", budget=_lm_budget)
def lm(tokens: np.ndarray, rng: np.random.Generator, vocab: VocabLike) -> dict:
    """Language modeling for decoder-only models (Section 3.2.3): empty inputs (the one objective whose inputs
    have no EOS), the chunk plus EOS as targets. Draws nothing from ``rng``.

    ``tokens`` 10..19 -> inputs ``[]``, targets ``[10 11 12 13 14 15 16 17 18 19 1]``.
    """
    tokens = as_tokens(tokens)
    return {"inputs": np.zeros(0, np.int32), "targets": append_eos(tokens, vocab)}
