"""The report's closing line says what a sweep found: the best row by the Average, its margin over the next
with the paired bootstrap's interval and verdict, how many rows it beats significantly, and each claim of the
paper's table that the rows test, with its mean effect over its pairs and its confidence."""

import numpy as np

from t5lit.data.tasks import get_task
from t5lit.paper import get_table
from t5lit.sweep.conclusion import findings
from t5lit.sweep.report import choose_columns
from t5lit.sweep.scorecard import Tester as RowTester
from t5lit.sweep.scorecard import build_scorecard
from t5lit.sweep.variants import Run, Variant

TASKS = ("builtin_kind", "builtin_topic")


def variant(name: str, paper_row: str, right: float, seed: int, baseline: bool = False) -> Variant:
    """A one-seed row whose predictions are right on a ``right`` share of every validation example (chosen at
    random per row), scored as a run scores them (per-example statistics kept)."""
    rng = np.random.default_rng(seed)
    run = Run(seed=0, reported=list(TASKS))
    v = Variant(name, baseline=baseline, paper_row=paper_row)
    for task_name in TASKS:
        task = get_task(task_name)
        val = task.load("validation")
        gold = [task.format(ex)["targets"] for ex in val]
        preds = [g if rng.random() < right else "wrong" for g in gold]
        metrics, stats = task.score_examples(val, preds)
        run.scores[task_name] = metrics
        run.summary[task_name] = (metrics["accuracy"] + metrics["f1"]) / 2
        run.examples = {**(run.examples or {}), task_name: stats.to_dict()}
    for col, value in run.summary.items():
        v.values[col] = [value]
    v.runs.append(run)
    v.status.append("complete")
    return v


def test_the_closing_line_names_the_winner_margin_and_claims():
    variants = [variant("enc_dec_denoising", "enc_dec_denoising", 0.85, 1, baseline=True),
                variant("prefix_lm_denoising", "prefix_lm_denoising", 0.82, 2),
                variant("enc_dec_lm", "enc_dec_lm", 0.55, 3),
                variant("prefix_lm_lm", "prefix_lm_lm", 0.50, 4)]
    columns = choose_columns(variants)
    assert columns == ["builtin_kind", "builtin_topic", "Average"]
    tester = RowTester(columns, n_samples=300)
    card = build_scorecard(get_table(2), variants, columns, tester)
    line = findings(variants, columns, tester, card)
    assert line.startswith("**Found:** enc_dec_denoising ★ has the best Average, ")
    assert "points above the next, prefix_lm_denoising (95% interval " in line
    assert "; paired bootstrap over 280 examples, p = " in line  # 88 + 192 examples, resampled together
    assert "it is significantly above 2 of the other 3 rows." in line  # the two LM rows, far below
    denoising = line.split('"the denoising objective beats the LM objective for every architecture": ')[1]
    assert denoising.startswith("reproduced (2 of its 2 pairs significantly in its direction; mean difference +")
    assert ", 95% interval +" in denoising


def test_nothing_finished_yet():
    line = findings([Variant("a")], ["builtin_kind"], RowTester(["builtin_kind"]))
    assert line.endswith("no row has a finished run.")
