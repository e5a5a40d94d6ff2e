"""The paper-style report on a hand-made study: means ± std over seeds, bold by the 2-std rule, ★ on the
baseline, failures shown, CSV / PNG / TensorBoard files written."""

import csv

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from t5lit.registry import ConfigError
from t5lit.sweep.report import Variant, bold_cells, write_report
from t5lit.sweep.study import StudyStorage, default_storage


def hand_made(tmp_path, name, rows: dict[str, list], baseline="base", columns=()):
    """rows: {row: [summary per seed, or None for a NaN failure]}."""
    store = StudyStorage(default_storage(tmp_path, name))
    study = optuna.create_study(study_name=name, storage=store.storage, direction="maximize")
    seeds = max(len(v) for v in rows.values())
    study.set_user_attr("sweep", {"kind": "grid", "rows": list(rows), "baseline": baseline, "seeds": list(range(seeds)),
                                  "columns": list(columns), "direction": "maximize", "total": len(rows) * seeds})
    for row, runs in rows.items():
        for seed, summary in enumerate(runs):
            attrs = {"job": f"{row}-seed{seed}", "row": row, "seed": seed}
            if summary is None:
                failed = {**attrs, "failure": "TrialFailed: NaN"}
                study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=failed))
            else:
                curves = {"loss": [[10, 3.0 - seed], [20, 2.0 - seed]], "toy": [[10, 50.0], [20, 60.0]]}
                study.add_trial(create_trial(state=TrialState.COMPLETE, value=sum(summary.values()),
                                             user_attrs={**attrs, "summary": summary, "val_curves": curves}))
    return study


def test_two_std_rule_star_and_files(tmp_path):
    hand_made(tmp_path, "t", {
        "base": [{"GLUE": 80.0, "SQuAD": 70.0}, {"GLUE": 82.0, "SQuAD": 72.0}],   # std 1.41 on both
        "close": [{"GLUE": 79.0, "SQuAD": 75.0}, {"GLUE": 80.0, "SQuAD": 76.0}],  # 79.5 >= 81 - 2.83: bold
        "far": [{"GLUE": 75.0, "SQuAD": 60.0}, {"GLUE": 76.0, "SQuAD": 61.0}],
        "nan": [{"GLUE": 90.0, "SQuAD": 90.0}, None]})                           # one seed failed
    rep = write_report(study="t", out_dir=tmp_path)
    assert rep.columns == ["GLUE", "SQuAD", "Average"]
    lines = rep.markdown.splitlines()
    assert "| Variant | GLUE | SQuAD | Average | Runs |" in lines
    assert "| base ★ | 81.00 ± 1.41 | 71.00 ± 1.41 | 76.00 ± 1.41 | complete, complete |" in lines
    assert "| close | 79.50 ± 0.71 | 75.50 ± 0.71 | 77.50 ± 0.71 | complete, complete |" in lines
    assert "| far | 75.50 ± 0.71 | 60.50 ± 0.71 | 68.00 ± 0.71 | complete, complete |" in lines
    assert "| nan | **90.00** | **90.00** | **90.00** | complete, failed (TrialFailed: NaN) |" in lines
    # GLUE: the best is 90 (one seed); 81 and 79.5 are more than 2 * 1.41 below it: only nan is bold.
    assert rep.bold["GLUE"] == {"nan"}
    with open(rep.files["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["base", "close", "far", "nan"] and table[0]["baseline"] == "1"
    assert float(table[1]["GLUE"]) == 79.5 and float(table[0]["GLUE_std"]) == pytest.approx(1.4142, abs=1e-4)
    for key in ("scores", "curves"):
        assert rep.files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rep.files["markdown"].read_text() == rep.markdown
    assert any(p.name.startswith("events.out.tfevents") for p in rep.files["tensorboard"].iterdir())


def test_bolding_rules():
    a, b, c = (Variant("a", baseline=True, values={"X": [80.0, 82.0]}), Variant("b", values={"X": [79.0, 80.0]}),
               Variant("c", values={"X": [77.0, 78.0]}))
    assert bold_cells([a, b, c], ["X"])["X"] == {"a", "b"}  # 81 - 2 * 1.414 = 78.17
    # No replicates: only the best (ties included) is bold.
    one = [Variant("a", values={"X": [80.0]}), Variant("b", values={"X": [80.0]}), Variant("c", values={"X": [79.9]})]
    assert bold_cells(one, ["X"])["X"] == {"a", "b"}


def test_single_seed_table_and_columns(tmp_path):
    hand_made(tmp_path, "one", {"base": [{"GLUE": 80.0, "EnDe": 26.0, "toy": 1.0}],
                                "other": [{"GLUE": 81.0, "EnDe": 24.0, "toy": 2.0}]}, columns=["GLUE", "EnDe"])
    md = write_report(study="one", out_dir=tmp_path).markdown
    assert "| Variant | GLUE | EnDe | Average |" in md and "toy" not in md and "Runs" not in md
    assert "| base ★ | 80.00 | **26.00** | **53.00** |" in md and "| other | **81.00** | 24.00 | 52.50 |" in md


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="no sweep journal"):
        write_report(study="missing", out_dir=tmp_path)
    hand_made(tmp_path, "there", {"base": [{"GLUE": 1.0}]})
    with pytest.raises(ConfigError, match="no study 'nope'.*studies there: there"):
        write_report(study="nope", storage=default_storage(tmp_path, "there"), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs a sweep file or --study"):
        write_report(out_dir=tmp_path)


def test_curves_over_every_seed_and_cost_columns(tmp_path):
    from t5lit.sweep.plots import curve_band

    steps, mean, low, high = curve_band([[[10, 3.0], [20, 2.0], [30, 1.5]], [[10, 2.0], [20, 1.0]]])
    assert steps.tolist() == [10, 20] and mean.tolist() == [2.5, 1.5] and low.tolist() == [2.0, 1.0]
    assert high.tolist() == [3.0, 2.0] and curve_band([])[0].size == 0
    store = StudyStorage(default_storage(tmp_path, "c"))
    study = optuna.create_study(study_name="c", storage=store.storage, direction="maximize")
    study.set_user_attr("sweep", {"kind": "grid", "rows": ["base", "other"], "baseline": "base", "total": 4})
    cost = {"parameters": 2.2e8, "flops_per_token": 7.5e8, "train_tokens": 2**35, "train_flops": 2.6e19}
    for row, seed, glue in [("base", 0, 80.0), ("base", 1, 82.0), ("other", 0, 70.0)]:
        attrs = {"job": f"{row}-seed{seed}", "row": row, "seed": seed, "summary": {"GLUE": glue},
                 "val_curves": {"loss": [[10, 3.0 - seed], [20, 2.0 - seed]]}}
        if row == "base":  # results' cost, as t5lit's pipeline records it
            attrs["cost"] = cost
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=glue, user_attrs=attrs))
    rep = write_report(study="c", out_dir=tmp_path)
    base, other = rep.variants
    assert [len(r.curves["loss"]) for r in base.runs] == [2, 2]  # both seeds' curves, for the mean and band
    assert "| Variant | GLUE | Params | FLOPs/token | Tokens |" in rep.markdown
    assert "| base ★ | **81.00 ± 1.41** | 220.0M | 750.0M | 34.4G |" in rep.markdown
    assert "| other | 70.00 | – | – | – |" in rep.markdown
    assert rep.files["curves"].read_bytes()[:4] == b"\x89PNG"


def test_bold_with_the_std_of_another_sweeps_baseline(tmp_path):
    """The paper bolds every later table with Table 1's std (Section 3.1.5): a one-seed sweep takes it from the
    baseline sweep's ★ row, named by ``std_from`` in the sweep file or ``--std-from``."""
    from pathlib import Path

    from t5lit.sweep.spec import load_sweep

    base = Path(__file__).resolve().parents[2] / "experiments" / "paper" / "baseline.yaml"
    table1 = tmp_path / "table1.yaml"
    table1.write_text(f"base: {base}\nstudy: table1\nseeds: [0, 1, 2]\nrows:\n  - {{name: base, baseline: true}}\n")
    hand_made(tmp_path, "t2", {"base": [{"GLUE": 80.0}], "other": [{"GLUE": 81.0}], "far": [{"GLUE": 75.0}]})
    # table1 has not run: bold as without (only the best), and the report says why.
    rep = write_report(study="t2", out_dir=tmp_path, std_from=table1)
    assert rep.bold["GLUE"] == {"other"} and "no std from table1: it has not run yet" in rep.markdown
    hand_made(tmp_path, "table1", {"base": [{"GLUE": 79.0}, {"GLUE": 81.0}, {"GLUE": 83.0}]})  # std 2.0
    rep = write_report(study="t2", out_dir=tmp_path, std_from=table1)
    assert rep.bold["GLUE"] == {"other", "base"}  # 80 >= 81 - 2 * 2; 75 is not
    assert "bold: within 2 std of the best (std of table1's base over 3 runs)" in rep.markdown
    # Named in the sweep file instead; a missing file is one line.
    t2 = tmp_path / "t2.yaml"
    t2.write_text(f"base: {base}\nstudy: t2\nstd_from: table1.yaml\nrows:\n  - {{name: base, baseline: true}}\n"
                  "  - {name: other}\n  - {name: far}\n")
    assert load_sweep(t2, check_rows=False).std_from == table1.resolve()
    assert write_report(t2, out_dir=tmp_path).bold["GLUE"] == {"other", "base"}
    t2.write_text(t2.read_text().replace("table1.yaml", "tabel1.yaml"))
    with pytest.raises(ConfigError, match="std_from must name another sweep file.*tabel1.yaml not found"):
        load_sweep(t2, check_rows=False)
