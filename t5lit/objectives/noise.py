"""Noise masks: which tokens of a raw chunk an objective corrupts (paper Section 3.3, T5's preprocessors).

Every mask is ``bool (length,)``, True on the noise tokens, drawn only from the ``rng`` it is given.
Masks are vectorised within the example (no Python loop over tokens or spans), so span corruption runs at
tens of thousands of examples per second on one core.
"""

from __future__ import annotations

import numpy as np

from t5lit.objectives.base import ConfigError


def iid_noise_mask(length: int, noise_density: float, rng: np.random.Generator) -> np.ndarray:
    """Each token is noise independently with probability ``noise_density`` (paper Section 3.3.2).

    ``iid_noise_mask(6, 0.5, np.random.default_rng(0))`` -> ``[F, T, T, T, F, F]``.
    """
    return rng.random(length) < noise_density


def random_spans_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """``(num_noise_tokens, num_noise_spans)`` of a random-spans mask over ``length`` tokens.

    As T5: noise tokens ``round(length * density)`` clipped to [1, length - 1], spans ``round(noise / mean)``
    at least 1. Also at most the number of non-noise tokens (T5 would fail there: each noise span must be
    preceded by a non-noise one). ``random_spans_counts(568, 0.15, 3.0) == (85, 28)``.
    """
    length = max(length, 2)
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, min(num_spans, length - num_noise)


def cut_points(keys: np.ndarray, num_cuts: int) -> np.ndarray:
    """Sorted positions in [1, len(keys)] where the ``num_cuts`` smallest ``keys`` cut a run of items.

    A uniformly random ``num_cuts``-subset of the ``len(keys)`` gaps between ``len(keys) + 1`` items, as T5's
    ``_random_segmentation`` shuffles ``num_segments - 1`` ones among ``num_items - 1`` gaps:
    ``cut_points(np.array([.9, .1, .5, .3]), 2) == [2, 4]`` (gaps after items 1 and 3, 0-based).
    """
    if num_cuts <= 0:
        return np.zeros(0, np.int64)
    threshold = np.partition(keys, num_cuts - 1)[num_cuts - 1]
    cuts = np.flatnonzero(keys <= threshold)
    if cuts.shape[0] != num_cuts:  # a tie between 53-bit uniforms: about once in 10^11 examples
        cuts = np.sort(np.argsort(keys, kind="stable")[:num_cuts])
    return cuts + 1


def random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random split of ``num_items`` items into ``num_segments`` non-empty runs.

    ``random_segmentation(10, 3, np.random.default_rng(0))`` -> ``[3, 1, 6]`` (sums to 10).
    """
    cuts = cut_points(rng.random(num_items - 1), num_segments - 1)
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_bounds(length: int, noise_density: float, rng: np.random.Generator,
                        mean_noise_span_length: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` (S,) each: the noise spans of T5's random-spans mask, ends exclusive.

    Spans alternate non-noise, noise, non-noise, ..., noise: the chunk starts with non-noise and ends with
    noise. The noise tokens are split into S runs and the non-noise tokens into S runs, each split uniformly
    at random (one ``rng.random(length - 2)`` draw: the first ``noise - 1`` keys cut the noise, the rest the
    non-noise). Length 1 is treated as length 2 and cut back, as T5 does.
    """
    n = max(length, 2)
    num_noise, num_spans = random_spans_counts(n, noise_density, mean_noise_span_length)
    keys = rng.random(n - 2)  # (n - 2,)
    return bounds_from_keys(keys, n, num_noise, num_spans)


def bounds_from_keys(keys: np.ndarray, n: int, num_noise: int, num_spans: int) -> tuple[np.ndarray, np.ndarray]:
    """``random_spans_bounds`` from its uniform keys (n - 2,), shared with the batched span corruption."""
    noise_cuts = cut_points(keys[:num_noise - 1], num_spans - 1)  # (S-1,) in noise-token coordinates
    nonnoise_ends = np.empty(num_spans, np.int64)  # (S,) non-noise tokens up to and with run s
    nonnoise_ends[:-1] = cut_points(keys[num_noise - 1:], num_spans - 1)
    nonnoise_ends[-1] = n - num_noise
    starts = np.empty(num_spans, np.int64)  # (S,) plus the noise tokens before run s
    starts[0] = 0
    starts[1:] = noise_cuts
    starts += nonnoise_ends
    ends = np.empty(num_spans, np.int64)  # (S,) plus the noise tokens up to and with run s
    ends[:-1] = noise_cuts
    ends[-1] = num_noise
    ends += nonnoise_ends
    return starts, ends


def mask_from_bounds(length: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``mask_from_bounds(6, [1, 4], [3, 6]) == [F, T, T, F, T, T]`` (spans [1, 3) and [4, 6), ends <= length)."""
    delta = np.zeros(length + 1, np.int8)
    delta[starts] = 1
    delta[ends] = -1
    return np.cumsum(delta[:length], dtype=np.int8).view(np.bool_)


def random_spans_noise_mask(length: int, noise_density: float, rng: np.random.Generator,
                            mean_noise_span_length: float = 3.0) -> np.ndarray:
    """T5's span mask (paper Section 3.3.4): ``round(length * density)`` noise tokens in spans of mean length
    ``mean_noise_span_length``; all masks with those counts that start with non-noise are equally likely.

    ``random_spans_noise_mask(10, 0.3, np.random.default_rng(0), 1.5)`` ->
    ``[F, F, T, T, F, F, F, F, F, T]`` (3 noise tokens, 2 spans).
    """
    starts, ends = random_spans_bounds(length, noise_density, rng, mean_noise_span_length)
    return mask_from_bounds(max(length, 2), starts, ends)[:length]


def random_prefix_noise_mask(length: int, noise_density: float, rng: np.random.Generator) -> np.ndarray:
    """True on a random prefix (T5's prefix LM marks the *prefix*: inputs keep it, targets drop it).

    The prefix has ``p`` tokens, uniform in [round((1 - 2 * density) * (length - 1)), length - 1] and at least
    1, so the expected suffix fraction is ``density``; T5 allows only 0.5 (p uniform in [1, length - 1]).
    ``random_prefix_noise_mask(5, 0.5, np.random.default_rng(0))`` -> ``[T, T, T, T, F]``.
    """
    if not 0 < noise_density <= 0.5:
        raise ConfigError(f"random_prefix_noise_mask needs noise_density in (0, 0.5], got {noise_density!r}")
    max_prefix = length - 1
    min_prefix = min(max_prefix, max(1, int(round((1 - 2 * noise_density) * max_prefix))))
    prefix = int(rng.integers(min_prefix, max_prefix + 1))
    return np.arange(length) < prefix


def regular_noise_mask(length: int, noise_density: float, rng: np.random.Generator, min_span_length: int = 1,
                       max_span_length: int = 5) -> np.ndarray:
    """Equally spaced spans of one random length in [min, max] and a random offset (T5's regular mask).

    The period is ``round(span / density)``; the first and last spans may be cut short:
    ``regular_noise_mask(12, 0.25, np.random.default_rng(0), 2, 2)`` -> ``[F, F, T, T, F, F, F, F, F, F, T, T]``.
    """
    span = int(rng.integers(min_span_length, max_span_length + 1))
    period = max(int(round(span / noise_density)), 1)
    offset = int(rng.integers(0, period))
    return (np.arange(length) + offset) % period < span


# Masks by name, for objectives that take ``noise_mask`` as a parameter.
NOISE_MASKS = {
    "iid": iid_noise_mask,
    "random_spans": random_spans_noise_mask,
    "random_prefix": random_prefix_noise_mask,
    "regular": regular_noise_mask,
}
