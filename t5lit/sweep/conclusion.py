"""The report's closing line: what a sweep found, in words, with its confidence.

    **Found:** enc_dec_denoising ★ has the best Average, 61.4, 3.9 points above the next, prefix_lm_denoising
    (95% interval -1.6 to +10.1; paired bootstrap over 280 examples, p = 0.14: within noise); it is
    significantly above 2 of the other 5 rows. Table 2's claims, on the Average: "the denoising objective beats
    the LM objective for every architecture": reproduced (3 of its 3 pairs significantly in its direction; mean
    difference +11.0, 95% interval +7.6 to +14.4); ...

The headline column is the Average (else the only column). Every difference comes with the test the report
uses for it (t5lit/sweep/scorecard.py ``Tester``: Welch's t over seeds, or the paired bootstrap over the
evaluation examples with one seed) and is called significant only when p < 0.05. For a paper table's sweep,
each claim of the table that the sweep's rows test is summed up by its mean difference over its pairs of rows:
with one seed, a paired bootstrap of that mean (the same resamples of the examples for every run); with seeds,
how many of its pairs differ significantly.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import numpy as np

from t5lit import stats as S

if TYPE_CHECKING:
    from t5lit.sweep.scorecard import Outcome, Scorecard, Tester
    from t5lit.sweep.variants import Variant

AVERAGE = "Average"
STAR = "★"


def _name(v: Variant) -> str:
    return f"{v.name} {STAR}" if v.baseline else v.name


def _p(p: float) -> str:
    return f"p = {p:.2f}" if p >= 0.01 else "p < 0.01"


def _test_name(tester: Tester, a: Variant, b: Variant) -> str:
    test, runs, _ = tester._plan(a, b)
    if test == "paired bootstrap":
        from t5lit.sweep.scorecard import run_examples

        return f"paired bootstrap over {sum(len(s) for s in run_examples(runs[0]).values())} examples"
    return tester.describe(a, b)


def _confidence(o: Outcome, tester: Tester, a: Variant, b: Variant) -> str:
    """``(95% interval -1.6 to +10.1; paired bootstrap over 280 examples, p = 0.14: within noise)``, or why
    there is no test."""
    if o.result is None:
        return f" (no test: {o.note or 'not testable'})"
    r = o.result
    interval = "" if np.isnan(r.low) else f"95% interval {r.low:+.1f} to {r.high:+.1f}; "
    verdict = "significant" if r.significant else "within noise"
    return f" ({interval}{_test_name(tester, a, b)}, {_p(r.p)}: {verdict})"


def _pair_values(tester: Tester, a: Variant, b: Variant, column: str) -> tuple[float, np.ndarray] | None:
    """The observed difference a - b in ``column`` and its values on the shared bootstrap resamples, when the two
    rows are compared by the paired bootstrap (one seed, per-example scores); else None."""
    test, runs, _ = tester._plan(a, b)
    if test != "paired bootstrap":
        return None
    (obs_a, boot_a), (obs_b, boot_b) = tester._boot(runs[0]), tester._boot(runs[1])
    if column not in boot_a or column not in boot_b:
        return None
    return obs_a[column] - obs_b[column], boot_a[column] - boot_b[column]


def claim_effect(claim, variants: list[Variant], column: str, tester: Tester) -> str | None:
    """How the sweep's pairs of a claim's rows differ in ``column``: how many significantly in the claim's
    direction (a "better" claim), and their mean difference with its 95% interval (a paired bootstrap of the
    mean with one seed); None when the sweep has none of its pairs."""
    by_row = {v.paper_row: v for v in variants if v.paper_row}
    pairs = [(by_row[a], by_row[b]) for a, b in claim.pairs if a in by_row and b in by_row
             and by_row[a].mean(column) is not None and by_row[b].mean(column) is not None]
    if not pairs:
        return None
    parts = []
    if claim.kind == "better":
        ahead = sum(tester.compare(a, b, column).direction > 0 for a, b in pairs)
        parts.append(f"{ahead} of its {len(pairs)} pair{'s' if len(pairs) > 1 else ''} significantly in its direction")
    mean = statistics.fmean(a.mean(column) - b.mean(column) for a, b in pairs)
    what = "mean difference" if len(pairs) > 1 else "difference"
    paired = [_pair_values(tester, a, b, column) for a, b in pairs]
    if all(p is not None for p in paired):
        low, high = S.percentile_interval(np.mean([p[1] for p in paired], axis=0))
        parts.append(f"{what} {mean:+.1f}, 95% interval {low:+.1f} to {high:+.1f}")
    else:
        parts.append(f"{what} {mean:+.1f}")
    return "; ".join(parts)


def findings(variants: list[Variant], columns: list[str], tester: Tester, card: Scorecard | None = None) -> str:
    """The closing line of a report (see the module docstring)."""
    column = AVERAGE if AVERAGE in columns else (columns[0] if columns else None)
    ranked = sorted((v for v in variants if column and v.mean(column) is not None),
                    key=lambda v: -v.mean(column))
    if not ranked:
        return "**Found:** nothing yet: no row has a finished run."
    best = ranked[0]
    seeds = min(len(v.values.get(column) or []) for v in ranked)
    line = f"**Found:** {_name(best)} has the best {column}, {best.mean(column):.1f}"
    line += f" (mean of {seeds} seeds)" if seeds > 1 else ""
    if len(ranked) > 1:
        second = ranked[1]
        o = tester.compare(best, second, column)
        above = sum(tester.compare(best, v, column).direction > 0 for v in ranked[1:])
        line += (f", {best.mean(column) - second.mean(column):.1f} points above the next, {_name(second)}"
                 + _confidence(o, tester, best, second)
                 + f"; it is significantly above {above} of the other {len(ranked) - 1} rows")
    line += "."
    if card is not None:
        verdicts = {c.claim.text: c.verdict for c in card.claims}
        claims = [(c, e) for c in card.table.claims if column in (*c.columns, AVERAGE)
                  and (e := claim_effect(c, variants, column, tester)) is not None]
        if claims:
            line += f" {card.table.name}'s claims, on the {column}: " + "; ".join(
                f"\"{c.text}\": {verdicts.get(c.text, 'untested')} ({e})" for c, e in claims) + "."
    return line
