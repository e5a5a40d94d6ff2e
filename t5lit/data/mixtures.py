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

Registered mixtures (the paper fine-tunes on each benchmark as one mixture, Section 3.1.3):

- ``glue``: CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE. Like T5's ``glue_v002_proportional`` it leaves out
  the diagnostic ``ax`` (test only) and WNLI (T5 trains on WSC/DPR instead; WNLI's dev set is adversarial
  to its train set).
- ``super_glue``: BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC. As T5's ``super_glue_v102_proportional``
  WSC is cast as "wsc_simple" (predict the referent; train on correct-referent examples only) and the
  diagnostics axb/axg are left out; T5 also adds the Definite Pronoun Resolution data set (1,322 examples in
  WSC's format) as extra training data, which is not included here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from t5lit.registry import ConfigError, Registry, check_choice, unknown_name_message

MIXING_METHODS = ("examples_proportional", "temperature", "equal")


@dataclass(frozen=True)
class Mixture:
    """Tasks trained together, sampled by ``rate`` (one of MIXING_METHODS) with ``limit`` K and ``temperature``;
    ``column``: the paper's column its tasks' scores average into (GLUE, SGLUE), if any."""

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


MIXTURES: Registry[Mixture] = Registry("mixture")

MIXTURES.add("glue", Mixture("glue", ("glue_cola", "glue_sst2", "glue_mrpc", "glue_qqp", "glue_stsb", "glue_mnli",
                                      "glue_qnli", "glue_rte"), column="GLUE"))
MIXTURES.add("super_glue", Mixture("super_glue", (
    "super_glue_boolq", "super_glue_cb", "super_glue_copa", "super_glue_multirc", "super_glue_record",
    "super_glue_rte", "super_glue_wic", "super_glue_wsc"), column="SGLUE"))


def mixture_rates(mixing: str | Mixture, num_examples: Mapping[str, int], *, limit: int | None = None,
                  temperature: float | None = None) -> dict[str, float]:
    """Sampling rate per task (summing to 1), in ``num_examples``' order.

    Args:
        mixing: a method in MIXING_METHODS, or a Mixture (its rate, limit and temperature are the defaults).
        num_examples: task -> number of training examples; a task with none is an error.
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
        if n <= 0:
            raise ConfigError(f"task {task!r} has no training examples; every task in a mixture needs some")
    if limit is not None and limit <= 0:
        raise ConfigError(f"mixing limit K must be positive, got {limit}")
    if method == "temperature" and temperature <= 0:
        raise ConfigError(f"mixing temperature must be positive, got {temperature}")
    names = list(num_examples)
    if method == "equal":
        return {name: 1.0 / len(names) for name in names}
    sizes = np.array([num_examples[n] if limit is None else min(num_examples[n], limit) for n in names], np.float64)
    rates = sizes / sizes.sum()
    if method == "temperature":
        rates = rates ** (1.0 / temperature)
        rates = rates / rates.sum()
    return {name: float(r) for name, r in zip(names, rates)}


def sample_task_sequence(rates: Mapping[str, float], n: int, seed: int | Sequence[int]) -> list[str]:
    """``n`` task names drawn independently by ``rates``; the same ``seed`` (an int or a tuple of ints such as
    ``(seed, epoch)``) always gives the same list."""
    names = list(rates)
    if not names:
        raise ConfigError("no tasks to sample from")
    p = np.array([rates[name] for name in names], np.float64)
    if (p < 0).any() or p.sum() <= 0:
        raise ConfigError(f"mixing rates must be non-negative and not all zero, got {dict(rates)}")
    draws = np.random.default_rng(seed).choice(len(names), size=n, p=p / p.sum())
    return [names[i] for i in draws]


def task_names(name: str) -> list[str]:
    """The task names of mixture ``name``, or ``[name]`` for a task; unknown names list both kinds (without
    loading any data)."""
    from t5lit.data.tasks import TASKS

    if name in MIXTURES:
        return list(MIXTURES.get(name).tasks)
    if name in TASKS:
        return [name]
    raise ConfigError(unknown_name_message("task or mixture", name, sorted(MIXTURES.names() + TASKS.names())))


def get_task_or_mixture(name: str) -> list:
    """The Task objects of mixture ``name``, or ``[task]`` for a task name; unknown names list both kinds."""
    from t5lit.data.tasks import TASKS, get_task

    if name in MIXTURES:
        return [get_task(t) for t in MIXTURES.get(name).tasks]
    if name in TASKS:
        return [get_task(name)]
    raise ConfigError(unknown_name_message("task or mixture", name, sorted(MIXTURES.names() + TASKS.names())))
