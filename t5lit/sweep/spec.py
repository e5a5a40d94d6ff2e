"""Sweep files: a paper table as a grid of named rows, or a hyperparameter search as a space.

A sweep file is YAML over one experiment file (``base:``, relative to the sweep file)::

    base: ../experiments/paper/baseline.yaml
    study: table2_architectures          # default: the file's stem
    seeds: [0, 1]                        # replicates: every row runs once per seed
    overrides: {scale: tiny}             # dotted overrides applied to every row
    rows:                                # a grid of named rows (the paper's tables) ...
      - {name: enc_dec_denoising, baseline: true, overrides: {}}
      - {name: prefix_lm_lm, overrides: {model.arch: prefix_lm, pretrain.objective: prefix_lm}}
    # ... or a search:
    space: {finetune.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
    n_trials: 20
    sampler: tpe                         # tpe | random | grid
    pruner: median                       # none | median | hyperband
    direction: maximize
    metric: summary.GLUE                 # a dotted path into results.json; summary.average = the table's mean
    columns: [GLUE, SGLUE]               # report columns (default: every summary column the runs produced)
    std_from: table1_baseline.yaml       # the report bolds within 2 std of the best, with that sweep's baseline std

A grid that reproduces one of the paper's tables names it, and each row the published row it reproduces, so
that the report puts the paper's numbers beside the measured ones (the scorecard; t5lit/paper/)::

    paper_table: 2
    rows:
      - {name: enc_dec_denoising, paper_row: enc_dec_denoising, baseline: true, overrides: {}}

Everything is checked before a trial starts: each row (and each space parameter at both ends of its range) is
resolved with ``load_experiment`` + its overrides into a typed ``Experiment`` and run through the pipeline's
pre-flight checks (t5lit/checks.py), so a misspelt override path, a bad value inside ``objective_params``
or a missing data file fails in one line naming the row, before any trial starts. A sweep over a runner of
your own (``run_sweep(runner=...)``) passes ``schema=False``: its rows are then only resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t5lit.registry import ConfigError, check_choice, check_name, unknown_name_message

TOP_KEYS = ("base", "study", "description", "seeds", "overrides", "rows", "space", "n_trials", "sampler",
            "pruner", "direction", "metric", "columns", "max_retries", "paper_table", "std_from")
SEARCH_KEYS = ("space", "n_trials", "sampler", "pruner")
ROW_KEYS = ("name", "overrides", "baseline", "description", "paper_row")
PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
              "categorical": ("type", "choices")}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Row:
    """One named variant of a grid sweep: a row of the paper's table."""

    name: str
    overrides: dict = field(default_factory=dict)
    baseline: bool = False
    paper_row: str | None = None  # the row of the sweep's paper_table it reproduces


@dataclass(frozen=True)
class Param:
    """One dimension of a search space (Optuna's float / int / categorical distributions)."""

    name: str  # a dotted override path, e.g. finetune.lr
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter's value (an enqueued retry gets its fixed value back)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self) -> list:
        """The values a grid sampler visits: the choices, or every step from low to high."""
        if self.type == "categorical":
            return list(self.choices)
        n = int(round((self.high - self.low) / self.step))
        values = [self.low + i * self.step for i in range(n + 1)]
        return [int(v) for v in values] if self.type == "int" else values


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file. ``kind`` is "grid" (rows) or "search" (space)."""

    path: Path
    base: Path
    study: str
    seeds: tuple[int, ...] = (0,)
    overrides: dict = field(default_factory=dict)
    rows: tuple[Row, ...] = ()
    space: tuple[Param, ...] = ()
    n_trials: int = 0
    sampler: str = "tpe"
    pruner: str = "none"
    direction: str = "maximize"
    metric: str = "summary.average"
    columns: tuple[str, ...] = ()
    max_retries: int = 3
    schema: bool = True  # rows are t5lit experiments (False: a runner of your own reads them)
    paper_table: int | None = None  # the paper's table this grid reproduces (t5lit/paper/tables.yaml)
    std_from: Path | None = None  # another sweep whose baseline's std over seeds sets the report's bold (Table 1)

    @property
    def kind(self) -> str:
        return "grid" if self.rows else "search"

    @property
    def baseline(self) -> str | None:
        return next((r.name for r in self.rows if r.baseline), None)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise ConfigError(unknown_name_message("row", name, [r.name for r in self.rows]))

    def jobs(self) -> list[str]:
        """Grid sweeps: every (row, seed) once, as run-directory names: ``["enc_dec-seed0", ...]``."""
        return [job_name(r.name, s) for r in self.rows for s in self.seeds]

    def total_trials(self) -> int:
        return len(self.rows) * len(self.seeds) if self.rows else self.n_trials

    def experiment(self, overrides: dict[str, Any], seed: int, name: str, source: str = "override") -> dict:
        """The resolved experiment config for one trial: base + sweep overrides + ``overrides``, seeded (a
        mapping that remembers which file or override set each key)."""
        from t5lit.experiment import load_experiment

        cfg = load_experiment(self.base, {**self.overrides, **overrides}, source=source, schema=self.schema)
        cfg["seed"], cfg["name"] = int(seed), name
        return cfg

    def describe(self) -> dict:
        """What a report needs from the sweep file, stored as the study's user attributes."""
        return {"kind": self.kind, "rows": [r.name for r in self.rows], "baseline": self.baseline,
                "seeds": list(self.seeds), "columns": list(self.columns), "metric": self.metric,
                "direction": self.direction, "space": [p.name for p in self.space], "total": self.total_trials(),
                "paper_table": self.paper_table,
                "paper_rows": {r.name: r.paper_row for r in self.rows if r.paper_row is not None}}


def job_name(row: str, seed: int) -> str:
    """``job_name("prefix_lm_lm", 1) == "prefix_lm_lm-seed1"``: the trial's run directory under the study."""
    return f"{row}-seed{seed}"


def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"sweep {path}: {what}")


def _mapping(path: Path, value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{what} must be a mapping of dotted paths to values, got {type(value).__name__}")
    return dict(value)


def _parse_row(path: Path, i: int, raw: Any) -> Row:
    if not isinstance(raw, dict) or "name" not in raw:
        raise _fail(path, f"rows[{i}] must be a mapping with a 'name', got {raw!r}")
    for key in raw:
        if key not in ROW_KEYS:
            raise _fail(path, f"rows[{i}] ({raw['name']}): " + unknown_name_message("row key", key, list(ROW_KEYS)))
    name = str(raw["name"])
    try:
        check_name("row name", name)
    except ConfigError as err:
        raise _fail(path, str(err)) from None
    paper_row = raw.get("paper_row")
    if paper_row is not None and not isinstance(paper_row, str):
        raise _fail(path, f"row {name!r}: paper_row must be the name of a row of the paper's table, got {paper_row!r}")
    return Row(name, _mapping(path, raw.get("overrides"), f"row {name!r} overrides"), bool(raw.get("baseline", False)),
               paper_row)


def _parse_param(path: Path, name: str, raw: Any) -> Param:
    where = f"space.{name}"
    if not isinstance(raw, dict):
        raise _fail(path, f"{where} must be a mapping like {{type: float, low: 0.0001, high: 0.01, log: true}}")
    kind = raw.get("type", "categorical" if "choices" in raw else None)
    if kind not in PARAM_KEYS:
        raise _fail(path, f"{where}: " + unknown_name_message("parameter type", kind, list(PARAM_KEYS)))
    for key in raw:
        if key not in PARAM_KEYS[kind]:
            raise _fail(path, f"{where}: " + unknown_name_message(f"{kind} parameter key", key, list(PARAM_KEYS[kind])))
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"{where}: categorical needs a non-empty list 'choices'")
        return Param(name, kind, choices=tuple(choices))
    try:
        low, high = float(raw["low"]), float(raw["high"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, f"{where}: {kind} needs numbers 'low' and 'high'") from None
    log, step = bool(raw.get("log", False)), raw.get("step")
    if not low < high:
        raise _fail(path, f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and (low <= 0 or step is not None):
        raise _fail(path, f"{where}: log scale needs low > 0 and no step")
    if step is not None and float(step) <= 0:
        raise _fail(path, f"{where}: step must be positive, got {step}")
    return Param(name, kind, low, high, log, None if step is None else float(step))


def load_sweep(path: str | Path, check_rows: bool = True, schema: bool = True) -> SweepSpec:
    """Parse and validate a sweep file; with ``check_rows`` every row (and every search parameter at both ends)
    is resolved against the base experiment and checked as a whole experiment, so a mistake fails here and
    not hours into the sweep. ``schema=False``: the rows are configs of a runner of your own (only resolved)."""
    from t5lit.experiment import read_yaml

    path = Path(path)
    raw = read_yaml(path, "sweep")
    for key in raw:
        if key not in TOP_KEYS:
            raise _fail(path, unknown_name_message("top-level key", key, list(TOP_KEYS)))
    if "base" not in raw:
        raise _fail(path, "needs 'base:', the experiment file the rows override (relative to the sweep file)")
    base = (path.parent / str(raw["base"])).resolve()
    if not base.is_file():
        raise _fail(path, f"base experiment not found: {base}")
    study = str(raw.get("study") or path.stem)
    try:
        check_name("study name", study)
    except ConfigError as err:
        raise _fail(path, str(err)) from None
    has_rows, has_space = bool(raw.get("rows")), bool(raw.get("space"))
    if has_rows == has_space:
        raise _fail(path, "give exactly one of 'rows' (a grid of named variants) or 'space' (a search), "
                          f"got {'both' if has_rows else 'neither'}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or \
            len(set(seeds)) != len(seeds):
        raise _fail(path, f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    direction, metric = raw.get("direction", "maximize"), str(raw.get("metric", "summary.average"))
    check_choice("direction", direction, DIRECTIONS)
    if metric.split(".")[0] not in ("summary", "scores"):
        raise _fail(path, f"metric {metric!r} must be a dotted path into results: summary.<column> (or "
                          "summary.average) or scores.<task>.<metric>")
    columns = raw.get("columns") or []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _fail(path, f"columns must be a list of summary column names, got {columns!r}")
    max_retries = raw.get("max_retries", 3)
    if not isinstance(max_retries, int) or max_retries < 0:
        raise _fail(path, f"max_retries must be a non-negative integer, got {max_retries!r}")
    std_from = raw.get("std_from")
    if std_from is not None:
        if not isinstance(std_from, str) or not (path.parent / std_from).is_file():
            raise _fail(path, f"std_from must name another sweep file (relative to this one), got {std_from!r}"
                              + ("" if not isinstance(std_from, str) else f": {path.parent / std_from} not found"))
        std_from = (path.parent / std_from).resolve()
    common = dict(path=path, base=base, study=study, seeds=tuple(seeds), std_from=std_from,
                  overrides=_mapping(path, raw.get("overrides"), "overrides"), direction=direction, metric=metric,
                  columns=tuple(columns), max_retries=max_retries, schema=bool(schema))
    if has_rows:
        spec = _grid_spec(path, raw, common)
    else:
        spec = _search_spec(path, raw, common)
    if check_rows:
        check_sweep(spec)
    return spec


def _grid_spec(path: Path, raw: dict, common: dict) -> SweepSpec:
    extra = [k for k in SEARCH_KEYS if k in raw]
    if extra:
        raise _fail(path, f"{', '.join(extra)} only apply to a search ('space:'), not to 'rows:'")
    if not isinstance(raw["rows"], list):
        raise _fail(path, "rows must be a list of {name, overrides, baseline}")
    rows = tuple(_parse_row(path, i, r) for i, r in enumerate(raw["rows"]))
    seen: set[str] = set()
    for r in rows:
        if r.name in seen:
            raise _fail(path, f"row name {r.name!r} is used twice; row names must be unique")
        seen.add(r.name)
    if sum(r.baseline for r in rows) > 1:
        raise _fail(path, f"only one row may be the baseline, got {[r.name for r in rows if r.baseline]}")
    return SweepSpec(rows=rows, paper_table=_paper_table(path, raw.get("paper_table"), rows), **common)


def _paper_table(path: Path, number: Any, rows: tuple[Row, ...]) -> int | None:
    """The paper table a grid names, with every row's paper_row checked against it (one line each)."""
    from t5lit.paper import get_table

    if number is None:
        named = [r.name for r in rows if r.paper_row is not None]
        if named:
            raise _fail(path, f"rows {named} name a paper_row but the sweep names no paper_table")
        return None
    try:
        table = get_table(number)
        for r in rows:
            if r.paper_row is not None:
                try:
                    table.row(r.paper_row)
                except ConfigError as err:
                    raise ConfigError(f"row {r.name!r}: {err}") from None
    except ConfigError as err:
        raise _fail(path, str(err)) from None
    return table.number


def _search_spec(path: Path, raw: dict, common: dict) -> SweepSpec:
    if raw.get("paper_table") is not None:
        raise _fail(path, "paper_table applies to a grid of named rows ('rows:'), not to a search")
    space_raw = raw["space"]
    if not isinstance(space_raw, dict):
        raise _fail(path, "space must be a mapping of dotted paths to distributions")
    space = tuple(_parse_param(path, str(k), v) for k, v in space_raw.items())
    sampler, pruner = raw.get("sampler", "tpe"), raw.get("pruner", "none")
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("pruner", pruner, PRUNERS)
    if sampler == "grid":
        loose = [p.name for p in space if p.type != "categorical" and p.step is None]
        if loose:
            raise _fail(path, f"sampler grid needs a step (or choices) for every parameter; missing for {loose}")
    grid_size = 1
    for p in space:
        grid_size *= len(p.grid_values()) if sampler == "grid" else 1
    n_trials = raw.get("n_trials", grid_size if sampler == "grid" else None)
    if not isinstance(n_trials, int) or n_trials < 1:
        raise _fail(path, f"a search needs n_trials, a positive integer, got {n_trials!r}")
    if len(common["seeds"]) != 1:
        raise _fail(path, f"a search runs one seed per trial; give one seed, got {list(common['seeds'])}")
    return SweepSpec(space=space, n_trials=n_trials, sampler=sampler, pruner=pruner, **common)


def check_sweep(spec: SweepSpec, deep: bool = False) -> dict[str, Any]:
    """Resolve and type every row (or every space parameter at both ends of its range, and each choice); with
    ``deep`` also run the pipeline's pre-flight checks (vocabulary, data files, objectives on the vocabulary:
    t5lit/checks.py). Returns the checked experiments by label ("base", row names, "param=value")."""
    out: dict[str, Any] = {}
    try:  # a grid's base alone never runs: only its rows must be whole experiments
        out["base"] = check_row(spec, {}, deep and spec.kind == "search", typed=spec.kind == "search")
    except ConfigError as err:
        raise _fail(spec.path, f"sweep overrides: {err}") from None
    for r in spec.rows:
        try:
            out[r.name] = check_row(spec, r.overrides, deep)
        except ConfigError as err:
            raise _fail(spec.path, f"row {r.name!r}: {err}") from None
    for p in spec.space:
        for value in (p.choices if p.choices else (p.low, p.high)):
            value = int(value) if p.type == "int" else value
            try:
                out[f"{p.name}={value}"] = check_row(spec, {p.name: value}, deep)
            except ConfigError as err:
                raise _fail(spec.path, f"space: {err}") from None
    return out


def check_row(spec: SweepSpec, overrides: dict, deep: bool = False, typed: bool = True):
    """The row's typed ``Experiment`` (with ``deep``, also pre-flight checked), or, for a runner of your own
    (``spec.schema`` False) or with ``typed=False``, its resolved mapping."""
    cfg = spec.experiment(overrides, spec.seeds[0], "check")
    if not spec.schema or not typed:
        return cfg
    from t5lit.schema import Experiment

    exp = Experiment.from_dict(cfg, cfg.sources)
    if deep:
        from t5lit.checks import check_experiment

        check_experiment(exp)
    return exp
