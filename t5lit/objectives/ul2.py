"""UL2's mixture of denoisers (Tay et al. 2022, "UL2: Unifying Language Learning Paradigms", Section 3.1).

The worked example of extending the library: a new objective is one function over the existing ones,
registered with its length rule; nothing else changes. Each example draws one denoiser with its ``rng``:

    R (regular, mode token "[NLU]"): span corruption, mean span 3 or 8 at 15%
    X (extreme, "[NLG]"):            span 3 or 8 at 50%, span 64 at 15% or 50%
    S (sequential, "[S2S]"):         prefix LM with about 25% of the chunk left for the targets

and prepends its mode token's ids to the inputs (``vocab.encode(mode)``, or ``mode_token_ids[mode]`` for a
vocabulary without ``encode``). The default rates are equal over the seven denoisers.

``SimpleVocab(200)``, ``tokens`` 10..29, ``mode_token_ids={"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}``, rng 0 ->
inputs ``[4 10 11 12 13 14 15 16 17 18 19 199 1]``, targets ``[199 20 21 22 23 24 25 26 27 28 29 1]``
(an X-denoiser: "[NLG]", half the chunk in one span).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from t5lit.objectives.base import ConfigError, VocabLike, as_tokens, check_fraction, register_objective
from t5lit.objectives.denoising import random_spans_helper, span_corruption
from t5lit.objectives.noise import random_spans_counts
from t5lit.objectives.sequential import prefix_lm, prefix_targets_length

# (mode token, mean noise span length or None for the prefix LM, noise density): UL2's Section 3.1.2.
UL2_DENOISERS: tuple[tuple[str, float | None, float], ...] = (
    ("[NLU]", 3.0, 0.15), ("[NLU]", 8.0, 0.15),
    ("[NLG]", 3.0, 0.5), ("[NLG]", 8.0, 0.5), ("[NLG]", 64.0, 0.15), ("[NLG]", 64.0, 0.5),
    ("[S2S]", None, 0.25),
)


def mode_ids(mode: str, vocab: VocabLike, mode_token_ids: Mapping[str, Sequence[int]] | None,
             max_mode_tokens: int) -> np.ndarray:
    """The ids of ``mode``: from ``mode_token_ids`` when given, else ``vocab.encode(mode)`` (at most
    ``max_mode_tokens`` of them, the room ``raw_length`` keeps)."""
    if mode_token_ids is not None:
        if mode not in mode_token_ids:
            raise ConfigError(f"mode_token_ids has no entry for {mode!r}; give ids for every mode token")
        return np.asarray(mode_token_ids[mode], dtype=np.int32)
    if not hasattr(vocab, "encode"):
        raise ConfigError("ul2 needs a vocabulary with encode() or the mode_token_ids parameter for its mode tokens")
    ids = np.asarray(vocab.encode(mode), dtype=np.int32)
    if ids.shape[0] > max_mode_tokens:
        raise ConfigError(f"mode token {mode!r} encodes to {ids.shape[0]} ids, more than max_mode_tokens="
                          f"{max_mode_tokens}; raise max_mode_tokens or give mode_token_ids")
    return ids


def _modes_of(denoisers) -> set[str]:
    return {d[0] for d in denoisers}


def _check_ul2(denoisers=UL2_DENOISERS, rates=None, mode_token_ids=None, max_mode_tokens: int = 8) -> None:
    if not denoisers:
        raise ConfigError("ul2 needs at least one denoiser (mode token, mean span length or None, density)")
    for d in denoisers:
        if (not isinstance(d, (list, tuple)) or len(d) != 3 or not isinstance(d[0], str)
                or not (d[1] is None or isinstance(d[1], (int, float)) and d[1] >= 1)):
            raise ConfigError(f"a ul2 denoiser is (mode token, mean span length >= 1 or None, density), got {d!r}")
        check_fraction("ul2 noise_density", d[2], 0.0, 0.5 if d[1] is None else 1.0, closed_high=d[1] is None)
    if rates is not None and (len(rates) != len(denoisers) or min(rates) < 0 or sum(rates) <= 0):
        raise ConfigError(f"ul2 rates must be {len(denoisers)} non-negative numbers with a positive sum, got {rates!r}")
    if mode_token_ids is not None and not _modes_of(denoisers) <= set(mode_token_ids):
        raise ConfigError(f"mode_token_ids must give ids for {sorted(_modes_of(denoisers))}, "
                          f"got {sorted(mode_token_ids)}")


def _ul2_lengths(inputs_length: int, denoisers, rates, mode_token_ids, max_mode_tokens) -> tuple[int, int]:
    # Keep room for the longest mode token, take the shortest raw chunk any denoiser allows, and the longest
    # targets any denoiser makes from it (inputs and targets only grow with the chunk).
    room = max(len(v) for v in mode_token_ids.values()) if mode_token_ids else max_mode_tokens
    length = inputs_length - room
    if length < 2:
        raise ConfigError(f"ul2 needs inputs_length > {room + 1} to hold its {room}-token mode tokens")
    raw = min(length if mean is None else random_spans_helper(length, density, mean)[0]
              for _, mean, density in denoisers)
    targets = max(prefix_targets_length(raw, density) if mean is None
                  else sum(random_spans_counts(raw, density, mean)) + 1 for _, mean, density in denoisers)
    return raw, targets


@register_objective("ul2", budget=_ul2_lengths, check=_check_ul2)
def ul2(tokens: np.ndarray, rng: np.random.Generator, vocab: VocabLike, denoisers=UL2_DENOISERS, rates=None,
        mode_token_ids: Mapping[str, Sequence[int]] | None = None, max_mode_tokens: int = 8) -> dict:
    """One denoiser of ``denoisers`` drawn by ``rates`` (equal when None); its mode token's ids first in the
    inputs. See the module docstring for the mixture and a worked example."""
    tokens = as_tokens(tokens)
    if rates is None:
        choice = int(rng.integers(len(denoisers)))
    else:
        choice = int(rng.choice(len(denoisers), p=np.asarray(rates, np.float64) / sum(rates)))
    mode, mean, density = denoisers[choice]
    if mean is None:
        example = prefix_lm(tokens, rng, vocab, noise_density=density)
    else:
        example = span_corruption(tokens, rng, vocab, noise_density=density, mean_noise_span_length=mean)
    example["inputs"] = np.concatenate([mode_ids(mode, vocab, mode_token_ids, max_mode_tokens), example["inputs"]])
    return example
