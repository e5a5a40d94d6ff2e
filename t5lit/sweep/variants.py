"""A sweep report's rows: a ``Variant`` (a grid row, or a search trial) and its finished ``Run``s, as the study
records them (t5lit/sweep/report.py builds them; scorecard.py and plots.py read them)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Run:
    """One finished run (a completed trial) of a variant: what results.json said, as the study keeps it.
    ``examples`` (per-example statistics by task) may be left to load from ``run_dir``'s results.json."""

    seed: int | None
    summary: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, list] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    reported: list[str] = field(default_factory=list)
    examples: dict | None = None
    run_dir: str | None = None
    wall_time: float | None = None
    _parsed: dict | None = field(default=None, repr=False)


@dataclass
class Variant:
    """One table row: per-column values over seeds, its finished runs, and how its runs ended."""

    name: str
    baseline: bool = False
    params: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, list] = field(default_factory=dict)  # the first finished seed's (``runs`` has them all)
    status: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    paper_row: str | None = None

    def mean(self, col: str) -> float | None:
        v = self.values.get(col) or []
        return statistics.fmean(v) if v else None

    def std(self, col: str) -> float | None:
        v = self.values.get(col) or []
        return statistics.stdev(v) if len(v) > 1 else None

    def values_of_runs(self) -> list[Run]:
        return self.runs

    def cost(self, key: str) -> float | None:
        """The mean over finished runs of a cost: parameters, flops_per_token, train_tokens, train_flops (from
        results' cost), or wall_time (the trials' own)."""
        vals = [r.wall_time if key == "wall_time" else r.cost.get(key) for r in self.runs]
        vals = [float(v) for v in vals if isinstance(v, (int, float))]
        return statistics.fmean(vals) if vals else None
