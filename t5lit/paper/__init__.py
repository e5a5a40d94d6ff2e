"""The T5 paper's published numbers (``tables.yaml`` beside this file), for the sweep report's scorecard.

    >>> table = get_table(2)
    >>> table.baseline, table.row("lm_lm").value("GLUE"), table.row("enc_dec_shared_lm").extra["params"]
    ('enc_dec_denoising', 73.78, 'P')
    >>> round(table.row("enc_dec_denoising").value("Average"), 2)    # the mean of the seven columns
    49.89

Each table has its rows (the paper's label, a value per column it reports, extra fields such as Table 2's
params and cost), the row marked ★ when there is one, and the claims its section makes, checked by the
scorecard (``Claim``). Table 16's per-task scores hang on the rows they belong to (``PaperRow.tasks``, keyed
``"<task>.<metric>"`` with t5lit's task and metric names). A sweep file names its table (``paper_table``) and
each row its published row (``paper_row``); a name that does not exist is a one-line error listing the valid
ones (``get_table``, ``PaperTable.row``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from t5lit.registry import ConfigError, unknown_name_message

DATA = Path(__file__).with_name("tables.yaml")
AVERAGE = "Average"
CLAIM_KINDS = ("better", "close")
DEFAULT_WITHIN = 0.02  # "close": within 2% of the reference row's score


@dataclass(frozen=True)
class Claim:
    """One conclusion of the paper about a table: for every pair (a, b), a scores above b (``better``) or within
    ``within`` (a fraction of b's score) of b (``close``), in each of ``columns`` (default: the Average)."""

    text: str
    kind: str
    pairs: tuple[tuple[str, str], ...]
    columns: tuple[str, ...] = (AVERAGE,)
    within: float = DEFAULT_WITHIN

    def holds_in(self, table: PaperTable) -> bool:
        """Whether the published numbers themselves support the claim (every pair and column)."""
        for a, b in self.pairs:
            for col in self.columns:
                va, vb = table.row(a).value(col), table.row(b).value(col)
                if va is None or vb is None:
                    return False
                if self.kind == "better" and not va > vb:
                    return False
                if self.kind == "close" and not abs(va - vb) <= self.within * abs(vb):
                    return False
        return True


@dataclass(frozen=True)
class PaperRow:
    """One published row: its key, the paper's label, a value per column, extra fields, Table 16's per-task
    scores."""

    key: str
    label: str
    values: dict[str, float]
    extra: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, float] = field(default_factory=dict)

    def value(self, column: str, columns: tuple[str, ...] | None = None) -> float | None:
        """The published value of ``column``; ``Average``: the mean of ``columns`` (default: the paper's seven),
        None unless the row reports all of them."""
        if column != AVERAGE:
            return self.values.get(column)
        cols = columns or paper_columns()
        if not cols or any(c not in self.values for c in cols):
            return None
        return math.fsum(self.values[c] for c in cols) / len(cols)


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    section: str
    rows: dict[str, PaperRow]
    baseline: str | None = None
    claims: tuple[Claim, ...] = ()
    std: dict[str, float] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    split: str = "validation"

    @property
    def name(self) -> str:
        return f"Table {self.number}"

    def row(self, key: str) -> PaperRow:
        if key not in self.rows:
            raise ConfigError(unknown_name_message(f"row of {self.name}", key, list(self.rows)))
        return self.rows[key]

    def columns(self) -> list[str]:
        """The paper's columns this table reports, in the paper's order."""
        seen = {c for r in self.rows.values() for c in r.values}
        return [c for c in paper_columns() if c in seen]


def paper_columns() -> tuple[str, ...]:
    return tuple(_load()[1])


def tables() -> dict[int, PaperTable]:
    """Every transcribed table by number."""
    return _load()[0]


def get_table(number: int | str) -> PaperTable:
    """The table ``number`` (2, "2" or "table2"); an unknown one is a ConfigError listing the valid numbers."""
    all_tables = tables()
    text = str(number).strip().lower().removeprefix("table").strip()
    if not text.isdigit() or int(text) not in all_tables:
        valid = ", ".join(str(n) for n in all_tables)
        raise ConfigError(f"the paper has no table {number!r} with published scores here; valid: {valid}")
    return all_tables[int(text)]


@lru_cache(maxsize=1)
def _load() -> tuple[dict[int, PaperTable], list[str]]:
    import yaml

    data = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    columns = list(data["columns"])
    raw_tables = data["tables"]
    per_task: dict[tuple[int, str], dict[str, float]] = {}
    for entry in data.get("per_task", []):
        for number, key in entry["rows"]:
            per_task.setdefault((int(number), str(key)), {}).update(
                {str(k): float(v) for k, v in entry["scores"].items()})
    out: dict[int, PaperTable] = {}
    for number, t in raw_tables.items():
        extra = tuple(t.get("extra", ()))
        rows = {}
        for key, r in t["rows"].items():
            values = {c: float(r[c]) for c in columns if c in r}
            rows[str(key)] = PaperRow(str(key), str(r.get("label", key)), values,
                                      {e: str(r[e]) for e in extra if e in r}, per_task.pop((int(number), key), {}))
        claims = tuple(Claim(str(c["text"]), str(c["kind"]), tuple((str(a), str(b)) for a, b in c["pairs"]),
                             tuple(c.get("columns") or (AVERAGE,)), float(c.get("within", DEFAULT_WITHIN)))
                       for c in t.get("claims", ()))
        table = PaperTable(int(number), str(t["title"]), str(t["section"]), rows, t.get("baseline"), claims,
                           {k: float(v) for k, v in (t.get("std") or {}).items()}, extra, str(t.get("split",
                                                                                                  "validation")))
        _check(table, columns)
        out[int(number)] = table
    if per_task:
        raise ConfigError(f"{DATA}: per_task names rows that are in no table: {sorted(per_task)}")
    return out, columns


def _check(table: PaperTable, columns: list[str]) -> None:
    """The data file's own consistency: baselines, claims' rows, kinds and columns exist."""
    where = f"{DATA}: {table.name}"
    if table.baseline is not None and table.baseline not in table.rows:
        raise ConfigError(f"{where}: baseline {table.baseline!r} is not one of its rows")
    for claim in table.claims:
        if claim.kind not in CLAIM_KINDS:
            raise ConfigError(f"{where}: claim {claim.text!r}: " + unknown_name_message("kind", claim.kind,
                                                                                       list(CLAIM_KINDS)))
        for a, b in claim.pairs:
            table.row(a), table.row(b)
        for col in claim.columns:
            if col != AVERAGE and col not in columns:
                raise ConfigError(f"{where}: claim {claim.text!r}: unknown column {col!r}")
