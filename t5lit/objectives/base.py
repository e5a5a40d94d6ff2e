"""The objective registry, the vocabulary protocol and the length budget (paper Section 3.3).

An objective is a pure per-example NumPy function

    fn(tokens: int32 (n,) raw chunk without EOS, rng: np.random.Generator, vocab, **params)
        -> {"inputs": int32 (a,), "targets": int32 (b,)}     # both end with EOS (1); inputs may be empty

registered by name. A new objective is one file in this package (modules here are discovered) or in a
plug-in package (the ``t5lit.objectives`` entry-point group); nothing else is edited::

    from t5lit.objectives import register_objective

    @register_objective("my_objective")            # its keyword defaults are its parameters
    def my_objective(tokens, rng, vocab, rate: float = 0.5) -> dict:
        ...
        return {"inputs": ..., "targets": ...}

Its **length budget** says, for an ``inputs_length``, how long a raw chunk it takes and how long its inputs
and targets can then be (``Budget``). The default fits objectives whose inputs and targets are each at most
the chunk plus EOS: a chunk of ``inputs_length - 1`` tokens, inputs and targets of at most
``inputs_length``. An objective that differs passes ``budget=fn(inputs_length, **params) -> Budget``
(span corruption: T5's ``random_spans_helper``, 512 -> chunk 568, targets 114; the LM objective has no
inputs part, ``Budget(raw, 0, targets)``), and optionally ``check=fn(**params)`` (raises ``ConfigError``)
and ``batch_fn`` (a vectorised path for 2-D chunks). The caller seeds ``rng`` per example
(``np.random.default_rng((seed, epoch, index))``); objectives never make their own generator, so an
example is a pure function of (chunk, seed, epoch, index).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from t5lit.registry import ConfigError, Registry, discover_entry_points, discover_modules


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
class Budget:
    """An objective's lengths at one ``inputs_length``: the chunk it takes and the longest outputs it makes.

    raw: tokens per chunk; inputs: the longest inputs, EOS included (0: the objective has no inputs part,
    as the LM objective, whose whole sequence is targets); targets: the longest targets, EOS included.
    ``Budget(568, 512, 114)`` is span corruption at 512 (Section 3.1.4). total (optional): the longest inputs +
    targets of one example when that is less than inputs + targets: an objective that splits its chunk between
    the two (prefix LM, drop tokens) makes examples of raw + 2 tokens, half a one-stack row, and a packed row
    then holds two of a slightly shorter chunk (``PretrainFeatures``). trim: the lengths bound all but rare
    examples (the i.i.d. objectives' targets, as T5 set them), which are cut to them.
    """

    raw: int
    inputs: int
    targets: int
    total: int = 0  # 0: inputs + targets
    # The lengths are T5's sequence lengths, which a rare example exceeds: it is cut to them, EOS kept last (T5
    # trimmed to its sequence lengths), instead of being an error.
    trim: bool = False

    @property
    def has_inputs(self) -> bool:
        return self.inputs > 0

    @property
    def longest(self) -> int:
        """The longest inputs + targets of one example."""
        return self.total or self.inputs + self.targets

    def check_example(self, objective: str, inputs_length: int, n_inputs: int, n_targets: int) -> None:
        """One line when an example broke the budget its objective declared (a plug-in's bug, caught early)."""
        for what, n, limit in (("inputs", n_inputs, self.inputs), ("targets", n_targets, self.targets)):
            if n > limit:
                raise ConfigError(f"objective {objective!r} made {what} of {n} tokens, more than the {limit} its "
                                  f"length budget declares at inputs_length {inputs_length} (chunk {self.raw}); "
                                  "fix its budget= function (see t5lit/objectives/base.py)")


def whole_chunk_budget(inputs_length: int, **_) -> Budget:
    """The default budget (T5's ``split_tokens_to_inputs_length``): a chunk of ``inputs_length - 1`` tokens,
    inputs and targets of at most the chunk plus EOS."""
    return Budget(inputs_length - 1, inputs_length, inputs_length)


@dataclass(frozen=True)
class Objective:
    """A registered objective: the per-example function, its length budget and optional batched fast path."""

    name: str
    fn: Callable[..., dict]
    budget: Callable[..., Budget] = whole_chunk_budget  # (inputs_length, **params) -> Budget
    check: Callable[..., None] | None = None  # (**params) -> None; raises ConfigError
    batch_fn: Callable[..., dict] | None = None  # (tokens (B, n), rngs, vocab, **params) -> 2-D inputs/targets
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""  # the first line of the function's docstring, for ``t5lit list objectives``


def _discover() -> None:
    discover_modules("t5lit.objectives")
    discover_entry_points("t5lit.objectives")


OBJECTIVES: Registry[Objective] = Registry("objective", discover=_discover)


def register_objective(name: str, *, budget: Callable[..., Budget | tuple[int, int]] | None = None,
                       check: Callable[..., None] | None = None, batch_fn: Callable[..., dict] | None = None):
    """Decorator: register ``fn(tokens, rng, vocab, **params)`` under ``name``; its keyword defaults are its
    parameters (every parameter after ``vocab`` needs a default).

    ``budget(inputs_length, **params)`` returns a ``Budget`` (or a ``(raw, targets)`` pair, inputs then being
    at most ``inputs_length``); omitted, ``whole_chunk_budget``.
    """
    rule = budget

    def deco(fn):
        params = list(inspect.signature(fn).parameters.values())
        if len(params) < 3:
            raise ConfigError(f"objective {name!r}: {fn.__name__} must take (tokens, rng, vocab, **params)")
        missing = [p.name for p in params[3:] if p.default is inspect.Parameter.empty
                   and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if missing:
            raise ConfigError(f"objective {name!r}: parameter(s) {', '.join(missing)} of {fn.__name__} need a "
                              "default value (the defaults are the objective's parameters)")
        defaults = {p.name: p.default for p in params[3:] if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        doc = (inspect.getdoc(fn) or "").strip().split("\n")[0]
        OBJECTIVES.add(name, Objective(name, fn, _as_budget_fn(rule), check, batch_fn, defaults, doc))
        return fn

    return deco


def _as_budget_fn(rule: Callable | None) -> Callable[..., Budget]:
    if rule is None:
        return whole_chunk_budget

    def budget(inputs_length: int, **params) -> Budget:
        out = rule(inputs_length, **params)
        if isinstance(out, Budget):
            return out
        raw, targets = out
        return Budget(int(raw), int(inputs_length), int(targets))

    return budget


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

    def budget(self, inputs_length: int, targets_length: int | None = None) -> Budget:
        """The length budget at ``inputs_length``; a configured ``targets_length`` (at least the objective's
        own) pads the targets to it. See ``budget``."""
        return budget(self, inputs_length, targets_length)

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


def budget(name_or_objective: str | BoundObjective, inputs_length: int, targets_length: int | None = None,
           **params) -> Budget:
    """The ``Budget`` of an objective at ``inputs_length``: chunks of ``raw`` tokens give inputs of at most
    ``inputs`` and targets of at most ``targets`` tokens (EOS counted in both).

    ``budget("span_corruption", 512) == Budget(568, 512, 114)``. A configured ``targets_length`` shorter than
    the objective's targets raises, giving the computed length; a longer one is returned as the targets.
    """
    if isinstance(name_or_objective, BoundObjective):
        objective = name_or_objective.objective
        full = _bind(objective, {**name_or_objective.params, **params})
    else:
        objective = OBJECTIVES.get(name_or_objective)
        full = _bind(objective, params)
    if isinstance(inputs_length, bool) or not isinstance(inputs_length, (int, np.integer)) or inputs_length < 2:
        raise ConfigError(f"inputs_length must be an integer >= 2, got {inputs_length!r}")
    b = objective.budget(int(inputs_length), **full)
    if not (isinstance(b, Budget) and b.raw >= 1 and 0 <= b.inputs and b.targets >= 1):
        raise ConfigError(f"objective {objective.name!r}: its budget at inputs_length {inputs_length} is {b!r}; "
                          "a budget needs raw >= 1, inputs >= 0 and targets >= 1")
    if targets_length is None:
        return b
    if targets_length < b.targets:
        raise ConfigError(f"expected targets length for {objective.name} ({b.targets}) is greater than the "
                          f"configured targets_length ({targets_length}) at inputs_length {inputs_length}")
    return Budget(b.raw, b.inputs, int(targets_length), b.total, b.trim)


def raw_length(name_or_objective: str | BoundObjective, inputs_length: int, targets_length: int | None = None,
               **params) -> tuple[int, int]:
    """``(raw chunk length, targets length)`` of the budget: ``raw_length("span_corruption", 512) == (568, 114)``
    (T5's random_spans_helper); see ``budget``."""
    b = budget(name_or_objective, inputs_length, targets_length, **params)
    return b.raw, b.targets


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


