"""Multi-task mixtures and their mixing rates (paper Section 3.5.2).

With ``e_m`` training examples in task m, a limit K and a temperature T:

- ``examples_proportional``: ``r_m = min(e_m, K) / sum_n min(e_n, K)``. K stops the largest tasks from
  swamping the rest (the paper tries K = 2^16 ... 2^21; ``limit=None`` means no limit).
- ``temperature``: ``r_m`` proportional to ``(min(e_m, K) / sum_n min(e_n, K)) ^ (1/T)``, renormalised; T = 1
  is examples-proportional, large T tends to equal mixing (the paper uses K = 2^21 with T = 2, 4, 8).
- ``equal``: ``r_m = 1 / M``.

    >>> mixture_rates("examples_proportional", {"a": 300, "b": 100}, limit=200)
    {'a': 0.666..., 'b': 0.333...}          # min(300, 200) = 200 against 100
    >>> mixture_rates("temperature", {"a": 300, "b": 100}, temperature=2.0)
    {'a': 0.634..., 'b': 0.366...}          # sqrt(.75), sqrt(.25), renormalised

The unsupervised member. A mixture (or a stage's task list) may name ``unsupervised``: the pre-training
objective on the pre-training corpus, mixed in with the supervised tasks (the paper's multi-task training and
multi-task pre-training, Sections 3.5.2-3.5.3). Its size in the rates is ``unsupervised_size`` examples, or,
unset, unlimited: ``min(inf, K) = K``, as the paper treats C4 ("orders of magnitude larger than every other
task's" data set; its final models, Section 3.7, set artificial sizes of 710k to 133M instead). A fine-tuning
stage whose tasks include it trains it (t5lit/data/unsupervised.py): its examples are the experiment's
pre-training objective on the pre-training corpus, streamed, at the stage's lengths, drawn into the stage's
training stream by its rate like any task's; it is never scored. ``mixture_members`` gives both parts of a name
(the Task objects, and whether the member is in); ``get_task_or_mixture`` gives the Task objects alone.

Registered mixtures (the paper fine-tunes on each benchmark as one mixture, Section 3.1.3):

- ``glue``: CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE. Like T5's ``glue_v002_proportional`` it leaves out
  the diagnostic ``ax`` (test only) and WNLI (T5 trains on WSC/DPR instead; WNLI's dev set is adversarial
  to its train set).
- ``super_glue``: BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC and DPR. As T5's
  ``super_glue_v102_proportional``, WSC is cast as "wsc_simple" (predict the referent; train on
  correct-referent examples only), the diagnostics AX-b / AX-g are left out (test only), and the Definite
  Pronoun Resolution data set (``dpr``, 1,322 examples in WSC's format) is added as training data (Section
  2.3); DPR has no validation split, so it is never scored and never counts in the SGLUE column.
- ``supervised``: every supervised task of the study: ``glue``, ``super_glue``, ``cnn_dailymail``, ``squad``
  and the three WMT pairs (T5's ``_supervised_tasks``; Table 12's "supervised multi-task pre-training").
- ``multi_task``: ``supervised`` and the unsupervised member: the paper's multi-task mixture (Tables 11-12;
  T5's ``all_mix``). T5's code also halves GLUE RTE's rate (SuperGLUE holds the same data) and leaves the
  GLUE / SuperGLUE tasks uncapped by K; the paper's formula above, which this module implements, does not.

A mixture may name tasks, other mixtures (expanded in place) and ``unsupervised``; a mixture without a
paper column (``supervised``) reports the columns of its parts (GLUE, SGLUE, CNNDM, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from t5lit.registry import ConfigError, Registry, check_choice, unknown_name_message

MIXING_METHODS = ("examples_proportional", "temperature", "equal")
UNSUPERVISED = "unsupervised"  # the member that stands for the pre-training objective on its corpus


@dataclass(frozen=True)
class Mixture:
    """Tasks trained together, sampled by ``rate`` (one of MIXING_METHODS) with ``limit`` K and ``temperature``;
    ``tasks`` names tasks, mixtures registered before it, or ``unsupervised``; ``column``: the paper's column
    its tasks' scores average into (GLUE, SGLUE), if any."""

    name: str
    tasks: tuple[str, ...]
    rate: str = "examples_proportional"
    limit: int | None = None
    temperature: float = 1.0
    column: str | None = None

    def __post_init__(self):
        check_choice("mixing rate", self.rate, MIXING_METHODS)
        if not self.tasks:
            raise ConfigError(f"mixture {self.name!r} has no tasks")
        for member in self.tasks:
            if member == self.name:
                raise ConfigError(f"mixture {self.name!r} names itself")


MIXTURES: Registry[Mixture] = Registry("mixture")


def register_mixture(mixture: Mixture) -> Mixture:
    """Add ``mixture`` to ``MIXTURES`` (a duplicate name is an error); its member names are checked when it is
    first expanded (``task_names``: an unknown member, or mixtures naming each other, is one line)."""
    return MIXTURES.add(mixture.name, mixture)


_GLUE = ("glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli", "glue_qnli", "glue_rte")
_SUPER_GLUE = ("super_glue_boolq", "super_glue_cb", "super_glue_copa", "super_glue_multirc", "super_glue_record",
               "super_glue_rte", "super_glue_wic", "super_glue_wsc", "dpr")
register_mixture(Mixture("glue", _GLUE, column="GLUE"))
register_mixture(Mixture("super_glue", _SUPER_GLUE, column="SGLUE"))
register_mixture(Mixture("supervised", ("glue", "super_glue", "cnn_dailymail", "squad", "wmt14_ende", "wmt14_enfr",
                                        "wmt16_enro")))
register_mixture(Mixture("multi_task", ("supervised", UNSUPERVISED)))


# ------------------------------------------------------------------------------------------ rates
def mixture_rates(mixing: str | Mixture, num_examples: Mapping[str, float], *, limit: int | None = None,
                  temperature: float | None = None) -> dict[str, float]:
    """Sampling rate per task (summing to 1), in ``num_examples``' order.

    Args:
        mixing: a method in MIXING_METHODS, or a Mixture (its rate, limit and temperature are the defaults).
        num_examples: task -> number of training examples; a task with none is an error. ``math.inf`` is an
            unlimited member (the unsupervised one): it counts K, so it needs a limit unless mixing is equal.
        limit: K, the cap on each task's count (None: no cap).
        temperature: T for ``temperature`` mixing (default 1).
    """
    if isinstance(mixing, Mixture):
        method = mixing.rate
        limit = mixing.limit if limit is None else limit
        temperature = mixing.temperature if temperature is None else temperature
    else:
        method = mixing
    check_choice("mixing rate", method, MIXING_METHODS)
    temperature = 1.0 if temperature is None else float(temperature)
    if not num_examples:
        raise ConfigError("no tasks to mix")
    for task, n in num_examples.items():
        if not n > 0:
            raise ConfigError(f"task {task!r} has no training examples; every task in a mixture needs some")
    if limit is not None and limit <= 0:
        raise ConfigError(f"mixing limit K must be positive, got {limit}")
    if method == "temperature" and not temperature > 0:
        raise ConfigError(f"mixing temperature must be positive, got {temperature}")
    names = list(num_examples)
    if method == "equal":
        return {name: 1.0 / len(names) for name in names}
    unlimited = [n for n in names if math.isinf(num_examples[n])]
    if unlimited and limit is None:
        raise ConfigError(f"{unlimited[0]!r} has no size: {method} mixing needs a limit K (mixing_limit) or a size "
                          "for it (unsupervised_size)")
    sizes = np.array([num_examples[n] if limit is None else min(num_examples[n], limit) for n in names], np.float64)
    rates = sizes / sizes.sum()
    if method == "temperature":
        rates = rates ** (1.0 / temperature)
        rates = rates / rates.sum()
    return {name: float(r) for name, r in zip(names, rates)}


def sample_task_indices(rates: Mapping[str, float], n: int, seed: int | Sequence[int]) -> np.ndarray:
    """``n`` draws (n,) of positions in ``rates``' order, independently by the rates; the same ``seed`` (an int
    or a tuple of ints such as ``(seed, epoch)``) always gives the same draws."""
    names = list(rates)
    if not names:
        raise ConfigError("no tasks to sample from")
    p = np.array([rates[name] for name in names], np.float64)
    if (p < 0).any() or p.sum() <= 0:
        raise ConfigError(f"mixing rates must be non-negative and not all zero, got {dict(rates)}")
    return np.random.default_rng(seed).choice(len(names), size=n, p=p / p.sum())


def sample_task_sequence(rates: Mapping[str, float], n: int, seed: int | Sequence[int]) -> list[str]:
    """``n`` task names drawn independently by ``rates`` (``sample_task_indices``, named)."""
    names = list(rates)
    return [names[i] for i in sample_task_indices(rates, n, seed)]


# ------------------------------------------------------------------------------------------ names
def _valid_names() -> list[str]:
    from t5lit.data.tasks import TASKS

    return sorted(MIXTURES.names() + TASKS.names() + [UNSUPERVISED])


def task_names(name: str, _within: tuple[str, ...] = ()) -> list[str]:
    """The task names of mixture ``name`` (nested mixtures expanded, each task once, ``unsupervised`` kept in
    place), or ``[name]`` for a task; unknown names list both kinds (without loading any data)."""
    from t5lit.data.tasks import TASKS

    if name == UNSUPERVISED or (isinstance(name, str) and name in TASKS):
        return [name]
    if name in MIXTURES:
        if name in _within:
            raise ConfigError(f"mixture {_within[0]!r} contains itself (through {' -> '.join(_within[1:] + (name,))})")
        out: list[str] = []
        for member in MIXTURES.get(name).tasks:
            if member not in MIXTURES and member != UNSUPERVISED and member not in TASKS:
                raise ConfigError(f"mixture {name!r} names {member!r}, which is no task or mixture")
            out += [t for t in task_names(member, (*_within, name)) if t not in out]
        return out
    raise ConfigError(unknown_name_message("task or mixture", name, _valid_names()))


def mixture_members(names: str | Iterable[str]) -> tuple[list, bool]:
    """``(Task objects, whether the unsupervised member is in)`` of task and mixture names, each task once.
    A fine-tuning stage mixes ``unsupervised`` in from the experiment's pre-training objective and corpus."""
    from t5lit.data.tasks import get_task

    tasks: dict[str, object] = {}
    unsupervised = False
    for name in [names] if isinstance(names, str) else list(names):
        for t in task_names(name):
            if t == UNSUPERVISED:
                unsupervised = True
            else:
                tasks.setdefault(t, get_task(t))
    return list(tasks.values()), unsupervised


def get_task_or_mixture(name: str) -> list:
    """The Task objects of mixture ``name``, or ``[task]`` for a task name; unknown names list both kinds. The
    unsupervised member is no Task (nothing scores it): a mixture that mixes it in gives its supervised tasks,
    ``unsupervised`` none (``mixture_members`` tells whether it is in)."""
    return mixture_members(name)[0]


def leave_out(entries: Sequence[str], names: Sequence[str]) -> list[str]:
    """``entries`` (task and mixture names) without the tasks of ``names``: an entry left out whole is dropped,
    a mixture that loses some of its tasks is replaced by the rest of them (leave-one-out, Section 3.5.3).

        >>> leave_out(["glue", "squad"], ["squad"])
        ['glue']
        >>> leave_out(["glue", "squad"], ["glue_rte"])[-2:]
        ['glue_qnli', 'squad']

    A name whose tasks are not all among the entries' is an error naming the entries."""
    flat = [t for e in entries for t in task_names(e)]
    drop: set[str] = set()
    for name in names:
        tasks = task_names(name)
        missing = [t for t in tasks if t not in flat]
        if missing:
            what = f"{name!r}" if tasks == [name] else f"{name!r} (its task {missing[0]!r})"
            raise ConfigError(f"leave_out {what} is not in the mixture {', '.join(entries)}; leave-one-out leaves "
                              "out one of the tasks trained together")
        drop.update(tasks)
    out: list[str] = []
    for entry in entries:
        tasks = task_names(entry)
        if not any(t in drop for t in tasks):
            out.append(entry)
        else:
            out += [t for t in tasks if t not in drop and t not in out]
    if not [e for e in out if e != UNSUPERVISED]:
        raise ConfigError(f"leave_out {', '.join(names)} leaves no supervised task of {', '.join(entries)}")
    return out
