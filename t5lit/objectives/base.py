"""The objective registry, the vocabulary protocol and the length helpers (paper Section 3.3).

An objective is a pure per-example NumPy function

    fn(tokens: int32 (n,) raw chunk without EOS, rng: np.random.Generator, vocab, **params)
        -> {"inputs": int32 (a,), "targets": int32 (b,)}     # both end with EOS (1)

registered with ``@register_objective(name, lengths=...)``. ``lengths(inputs_length, **params)`` says how
long a raw chunk may be so that every example's inputs fit ``inputs_length``, and how long its targets can
then be (T5's ``random_spans_helper`` for span corruption). ``get_objective(name, **params)`` binds and
checks the parameters; ``raw_length(name, inputs_length, **params)`` answers the length question.
The caller seeds ``rng`` per example (``np.random.default_rng((seed, epoch, index))``); objectives never
make their own generator, so an example is a pure function of (chunk, seed, epoch, index).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from t5lit.registry import ConfigError, Registry


class VocabLike(Protocol):
    """What an objective needs from a vocabulary (T5's conventions: pad 0, EOS 1, unk 2).

    The ``num_extra_ids`` sentinels take the top ids: ``sentinel_id(i) == vocab_size - 1 - i`` (<extra_id_0>
    is the last id). A vocabulary may also have ``encode(text) -> list[int]``; only UL2's mode tokens use it.
    """

    vocab_size: int  # all ids, the extra ids included
    num_extra_ids: int
    eos_id: int
    pad_id: int
    unk_id: int

    def sentinel_id(self, i: int) -> int: ...


@dataclass(frozen=True)
class SimpleVocab:
    """A vocabulary of ids only (no text), for tests and benchmarks: ``SimpleVocab(200).sentinel_id(0) == 199``."""

    vocab_size: int
    num_extra_ids: int = 100
    eos_id: int = 1
    pad_id: int = 0
    unk_id: int = 2

    def sentinel_id(self, i: int) -> int:
        return self.vocab_size - 1 - i


@dataclass(frozen=True)
class Objective:
    """A registered objective: the per-example function, its length rule and optional batched fast path."""

    name: str
    fn: Callable[..., dict]
    lengths: Callable[..., tuple[int, int]]  # (inputs_length, **params) -> (raw_tokens_length, targets_length)
    check: Callable[..., None] | None = None  # (**params) -> None; raises ConfigError
    batch_fn: Callable[..., dict] | None = None  # (tokens (B, n), rngs, vocab, **params) -> 2-D inputs/targets
    defaults: dict[str, Any] = field(default_factory=dict)


OBJECTIVES: Registry[Objective] = Registry("objective")


def register_objective(name: str, *, lengths: Callable[..., tuple[int, int]], check: Callable[..., None] | None = None,
                       batch_fn: Callable[..., dict] | None = None):
    """Decorator: register ``fn(tokens, rng, vocab, **params)``; its keyword defaults are the valid params."""

    def deco(fn):
        sig = list(inspect.signature(fn).parameters.values())[3:]
        defaults = {p.name: p.default for p in sig}
        OBJECTIVES.add(name, Objective(name, fn, lengths, check, batch_fn, defaults))
        return fn

    return deco


def _bind(objective: Objective, params: dict) -> dict:
    unknown = sorted(set(params) - set(objective.defaults))
    if unknown:
        valid = ", ".join(objective.defaults) or "none"
        raise ConfigError(f"objective {objective.name!r} has no parameter {unknown[0]!r}; valid: {valid}")
    full = {**objective.defaults, **params}
    if objective.check is not None:
        objective.check(**full)
    return full


class BoundObjective:
    """An objective with its parameters bound: ``obj(tokens, rng, vocab) -> {"inputs", "targets"}``."""

    def __init__(self, objective: Objective, params: dict):
        self.objective, self.name, self.params = objective, objective.name, params

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator, vocab: VocabLike) -> dict:
        return self.objective.fn(tokens, rng, vocab, **self.params)

    def raw_length(self, inputs_length: int, targets_length: int | None = None) -> tuple[int, int]:
        return raw_length(self, inputs_length, targets_length)

    def apply_batch(self, tokens: np.ndarray | Sequence[np.ndarray], rngs: Sequence[np.random.Generator],
                    vocab: VocabLike) -> list[dict]:
        """Examples for many chunks, equal to ``[self(t, r, vocab) for t, r in zip(tokens, rngs)]``.

        Rows of one length (a 2-D ``tokens``) go through the objective's vectorised fast path when it has one
        (span corruption: every row then has the same number of noise tokens and spans).
        """
        fast = self.objective.batch_fn
        if fast is not None and isinstance(tokens, np.ndarray) and tokens.ndim == 2 and tokens.shape[1] >= 2:
            out = fast(tokens, rngs, vocab, **self.params)
            return [{"inputs": i, "targets": t} for i, t in zip(out["inputs"], out["targets"])]
        return [self(t, r, vocab) for t, r in zip(tokens, rngs)]

    def __repr__(self) -> str:
        return f"BoundObjective({self.name!r}, {self.params})"


def get_objective(name: str, **params) -> BoundObjective:
    """The objective ``name`` with ``params`` bound and checked (unknown name or param -> one-line ConfigError).

    ``get_objective("span_corruption")(np.arange(10, 30, dtype=np.int32), np.random.default_rng(0),
    SimpleVocab(200))`` -> inputs ``[10 11 ... 26 199 1]``, targets ``[199 27 28 29 1]``.
    """
    objective = OBJECTIVES.get(name)
    return BoundObjective(objective, _bind(objective, params))


def raw_length(name_or_objective: str | BoundObjective, inputs_length: int, targets_length: int | None = None,
               **params) -> tuple[int, int]:
    """``(raw_tokens_length, targets_length)``: chunks of at most ``raw_tokens_length`` tokens give inputs of at
    most ``inputs_length`` and targets of at most the returned targets length (EOS counted in both).

    ``raw_length("span_corruption", 512) == (568, 114)`` (T5's random_spans_helper). With a configured
    ``targets_length`` that is too short this raises, giving the computed length; otherwise the configured
    one is returned.
    """
    if isinstance(name_or_objective, BoundObjective):
        objective = name_or_objective.objective
        full = _bind(objective, {**name_or_objective.params, **params})
    else:
        objective = OBJECTIVES.get(name_or_objective)
        full = _bind(objective, params)
    if not isinstance(inputs_length, (int, np.integer)) or inputs_length < 2:
        raise ConfigError(f"inputs_length must be an integer >= 2, got {inputs_length!r}")
    raw, needed = objective.lengths(int(inputs_length), **full)
    if targets_length is None:
        return raw, needed
    if targets_length < needed:
        raise ConfigError(f"expected targets length for {objective.name} ({needed}) is greater than the configured "
                          f"targets_length ({targets_length}) at inputs_length {inputs_length}")
    return raw, int(targets_length)


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers: token checks, EOS, sentinel counts, parameter checks.


def as_tokens(tokens) -> np.ndarray:
    """A raw chunk as int32 (n,); an empty chunk is a one-line error."""
    tokens = np.asarray(tokens, dtype=np.int32)
    if tokens.ndim != 1 or tokens.shape[0] == 0:
        raise ConfigError(f"an objective needs a 1-D chunk of at least 1 token, got shape {tokens.shape}")
    return tokens


def append_eos(seq: np.ndarray, vocab: VocabLike) -> np.ndarray:
    """``[5, 6] -> [5, 6, 1]`` (int32)."""
    out = np.empty(seq.shape[0] + 1, np.int32)
    out[:-1] = seq
    out[-1] = vocab.eos_id
    return out


def check_sentinels(needed: int, vocab: VocabLike) -> None:
    """Raise when an example needs more distinct sentinels than the vocabulary has extra ids."""
    if needed > vocab.num_extra_ids:
        raise ConfigError(f"this example needs {needed} sentinels but the vocabulary has {vocab.num_extra_ids} extra "
                          f"ids; use more extra ids, shorter chunks or a longer mean_noise_span_length")


def check_fraction(name: str, value, low: float = 0.0, high: float = 1.0, *, closed_low: bool = False,
                   closed_high: bool = False) -> None:
    """``noise_density`` in (0, 1) and the like, as a one-line ConfigError."""
    ok = (isinstance(value, (int, float)) and (low <= value if closed_low else low < value)
          and (value <= high if closed_high else value < high))
    if not ok:
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")


def check_at_least(name: str, value, low: float) -> None:
    if not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"{name} must be a number >= {low}, got {value!r}")


def whole_chunk_lengths(inputs_length: int, **_) -> tuple[int, int]:
    """Objectives whose inputs and targets are at most the chunk plus EOS (T5's split_tokens_to_inputs_length):
    a chunk of ``inputs_length - 1`` tokens, targets of at most ``inputs_length``."""
    return inputs_length - 1, inputs_length
