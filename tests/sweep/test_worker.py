"""Sweeps with real worker processes and a fast fake runner: every job exactly once, concurrent launchers,
NaN trials failed with their reason, searches stop at n_trials; `t5lit sweep status`, and one-line errors.

The worker processes import this module for ``fake_runner``: keep its imports light (no torch)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from t5lit.registry import ConfigError
from t5lit.sweep import run_sweep
from t5lit.sweep.study import StudyStorage, jobs_of
from t5lit.sweep.supervisor import device_groups
from t5lit.sweep.worker import metric_value, runner_ref

BASE = {"name": "fake", "seed": 0, "model": {"arch": "encoder_decoder", "overrides": {}},
        "finetune": {"tasks": ["toy"], "lr": 0.001}, "fake": {"steps": 2, "sleep": 0.02, "score": 50.0, "nan_at": -1}}
FAST = dict(heartbeat_interval=1, grace_period=3, poll=0.2)


def fake_runner(cfg, run_dir, *, trial=None, callbacks=()):
    """run_experiment's stand-in: "trains" cfg.fake.steps steps with a checkpoint after each, resumes from
    it when started again in the same run_dir, and logs each start (pid, step) to starts.log."""
    f, run_dir = cfg["fake"], Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "pid").write_text(str(os.getpid()))
    ckpt = run_dir / "ckpt.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    with open(run_dir / "starts.log", "a") as log:
        log.write(f"{os.getpid()} {step}\n")
    for s in range(step, f["steps"]):
        time.sleep(f["sleep"])
        if s == f["nan_at"]:
            from t5lit.pipeline import TrialFailed  # here: worker processes start without torch otherwise

            raise TrialFailed(f"train/loss is NaN at step {s}")
        (run_dir / "ckpt.tmp").write_text(json.dumps({"step": s + 1}))
        os.replace(run_dir / "ckpt.tmp", ckpt)
        if trial is not None:
            trial.report(1.0 / (s + 1), s)
    score = f["score"] + cfg["seed"]
    results = {"name": cfg["name"], "status": "complete", "scores": {"toy": {"accuracy": score}},
               "summary": {"toy": score}, "val_curves": {"loss": [[1, 2.0], [2, 1.0]]}}
    (run_dir / "results.json").write_text(json.dumps(results))
    return results


def make_sweep(tmp_path: Path, sweep: dict, name: str = "s.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"base": "base.yaml", **sweep}, sort_keys=False))
    return path


def starts(run_dir: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in (run_dir / "starts.log").read_text().splitlines()]


def load(out: Path, study: str, storage: str | None = None) -> optuna.Study:
    url = storage or str(out / study / f"{study}.journal")
    return optuna.load_study(study_name=study, storage=StudyStorage(url).storage)


def step(run_dir: Path) -> int:
    """The step a fake run has checkpointed (0 before its first checkpoint)."""
    try:
        return json.loads((run_dir / "ckpt.json").read_text())["step"]
    except (FileNotFoundError, ValueError):
        return 0


def wait_for(condition, timeout: float = 60, what: str = "the condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def process(args: list[str], **popen):
    """A subprocess in its own process group, SIGKILLed whole when the block ends if it still runs, so that a
    hang never outlives its test (the block bounds every wait with a timeout)."""
    proc = subprocess.Popen(args, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_concurrent_launchers_run_every_job_exactly_once(tmp_path, kind):
    storage = os.environ.get("T5LIT_TEST_POSTGRES_URL") if kind == "postgresql" else None
    if kind == "postgresql" and not storage:
        pytest.skip("set T5LIT_TEST_POSTGRES_URL to test a PostgreSQL storage")
    name = f"grid_{uuid.uuid4().hex[:8]}"  # a fresh study in a shared database
    rows = [{"name": n, "overrides": {"fake.score": s}} for n, s in (("a", 10.0), ("b", 20.0), ("c", 30.0))]
    sweep = make_sweep(tmp_path, {"study": name, "seeds": [0, 1], "rows": rows})
    out = tmp_path / "out"
    results = []
    # Two launchers at once (as two machines would): 2 + 1 workers pulling from one study.
    threads = [threading.Thread(target=lambda w=w: results.append(
        run_sweep(sweep, storage=storage, workers=w, runner=fake_runner, out_dir=out, **FAST))) for w in (2, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r["exit_codes"] == [0] * len(r["exit_codes"]) for r in results) and len(results) == 2
    study = load(out, name, storage)
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["job"] for t in trials) == sorted(f"{r}-seed{s}" for r in "abc" for s in (0, 1))
    for t in trials:
        assert len(starts(out / name / t.user_attrs["job"])) == 1  # never run twice
        assert t.value == {"a": 10.0, "b": 20.0, "c": 30.0}[t.user_attrs["row"]] + t.user_attrs["seed"]
        assert t.user_attrs["summary"] == {"toy": t.value} and t.user_attrs["val_curves"]["loss"]
    assert study.user_attrs["sweep"]["rows"] == ["a", "b", "c"]
    # Running the command again changes nothing: every row is finished.
    again = run_sweep(sweep, storage=storage, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert again["done"] == again["total"] == 6 and len(load(out, name, storage).get_trials()) == 6


def test_nan_trial_fails_with_reason_and_the_sweep_goes_on(tmp_path):
    rows = [{"name": "ok", "overrides": {}}, {"name": "bad", "overrides": {"fake.nan_at": 1}}]
    sweep = make_sweep(tmp_path, {"study": "nan", "rows": rows})
    out = tmp_path / "out"
    res = run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert res["complete"] == 1 and res["failed"] == 1 and res["done"] == 2
    by_job = {j: ts for j, ts in jobs_of(load(out, "nan")).items()}
    bad = by_job["bad-seed0"]
    assert len(bad) == 1 and bad[0].state == TrialState.FAIL
    assert bad[0].user_attrs["failure"] == "TrialFailed: train/loss is NaN at step 1"
    assert by_job["ok-seed0"][0].state == TrialState.COMPLETE
    # A re-run does not repeat the NaN row; retry_failed gives it one more attempt (resuming at step 1).
    run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert len(starts(out / "nan" / "bad-seed0")) == 1
    run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, retry_failed=True, **FAST)
    assert [s for _, s in starts(out / "nan" / "bad-seed0")] == [0, 1]
    assert len(jobs_of(load(out, "nan"))["bad-seed0"]) == 2


def test_search_stops_at_n_trials(tmp_path):
    sweep = make_sweep(tmp_path, {"study": "search", "space": {
        "fake.score": {"type": "float", "low": 0.0, "high": 10.0}, "fake.steps": {"choices": [1, 2]}},
        "n_trials": 5, "sampler": "random", "pruner": "median", "direction": "maximize", "metric": "summary.toy"})
    out = tmp_path / "out"
    res = run_sweep(sweep, workers=2, runner=fake_runner, out_dir=out, **FAST)
    trials = load(out, "search").get_trials()
    assert res["done"] == 5 and len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["job"] for t in trials}) == 5
    for t in trials:  # the sampled parameters reached the experiment, and the value is the metric
        assert t.value == pytest.approx(t.params["fake.score"])
        assert len(starts(out / "search" / t.user_attrs["job"])) == 1
        assert t.intermediate_values  # the trial was handed to the runner (pruning on)


def test_bad_storage_is_one_line_and_creates_nothing(tmp_path):
    sweep = make_sweep(tmp_path, {"rows": [{"name": "a"}]})
    url = "postgresql://user:secret@127.0.0.1:1/nodb"
    with pytest.raises(ConfigError) as err:
        run_sweep(sweep, storage=url, runner=fake_runner, out_dir=tmp_path / "out", **FAST)
    msg = str(err.value)
    assert msg.startswith("cannot open sweep storage postgresql://user:***@127.0.0.1:1/nodb") and "\n" not in msg
    assert "secret" not in msg and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="unknown scheme 'redis'"):
        run_sweep(sweep, storage="redis://x", runner=fake_runner, out_dir=tmp_path / "out")


def test_helpers():
    assert device_groups("0,1,2,3", 2, 1) == ["0,1", "2,3"] and device_groups(None, 1, 3) == [None] * 3
    with pytest.raises(ConfigError, match="must divide"):
        device_groups("0,1,2", 2, 1)
    assert runner_ref(fake_runner).endswith("test_worker:fake_runner")
    with pytest.raises(ConfigError, match="module-level"):
        runner_ref(lambda cfg, run_dir: {})
    r = {"summary": {"GLUE": 80.0, "SGLUE": 70.0}, "scores": {"rte": {"accuracy": 60.0}}}
    assert metric_value(r, "summary.average") == 75.0 and metric_value(r, "scores.rte.accuracy") == 60.0
    assert metric_value(r, "summary.CNNDM") is None
    assert metric_value({"summary": {"x": float("nan")}}, "summary.x") is None


def claim(study: optuna.Study, job: str, worker: str) -> optuna.Trial:
    """Start the job's waiting trial as ``worker`` (``host:pid``) would."""
    t = next(t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs["job"] == job)
    study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    trial = optuna.Trial(study, t._trial_id)
    trial.set_user_attr("worker", worker)
    return trial


def test_status_shows_each_rows_state_attempts_and_last_error(tmp_path, capsys):
    from t5lit.cli import main
    from t5lit.sweep.spec import load_sweep
    from t5lit.sweep.study import default_storage, open_study, top_up

    rows = [{"name": n} for n in "abcd"]
    sweep = make_sweep(tmp_path, {"study": "st", "rows": rows})
    out = tmp_path / "out"
    spec = load_sweep(sweep, schema=False)
    store = StudyStorage(default_storage(out, "st"))
    study = open_study(spec, store)
    a1 = claim(study, "a-seed0", "h:1")
    study._storage.set_trial_state_values(a1._trial_id, TrialState.FAIL)  # its worker was lost
    top_up(study, spec)
    study.tell(claim(study, "a-seed0", "h:2"), 51.5)
    b = claim(study, "b-seed0", "h:2")
    b.set_user_attr("failure", "TrialFailed: train/loss is NaN at step 1")
    study.tell(b, state=TrialState.FAIL)
    claim(study, "c-seed0", "h:3")  # running; d waits for a worker
    make_sweep(tmp_path, {"study": "st", "rows": [*rows, {"name": "e"}]})  # a row added since: pending
    capsys.readouterr()
    main(["sweep", "status", str(sweep), "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sweep st: 5 job(s) in {out / 'st' / 'st.journal'}"
    assert lines[1:3] + lines[5:] == [
        "job      state     attempts  value  worker      last error",
        "a-seed0  complete  2         51.5   -           attempt 1: its worker h:1 was lost (died or stopped beating)",
        "d-seed0  queued    0         -      -           -",
        "e-seed0  pending   0         -      -           -",
        "2/5 done: 1 complete, 1 failed, 1 running, 1 queued, 1 pending",
        "failed rows run again with `t5lit sweep run SWEEP --retry-failed` (or when their row changes)"]
    assert lines[3] == ("b-seed0  failed    1         -      -           "
                        "attempt 1: TrialFailed: train/loss is NaN at step 1")
    assert re.fullmatch(r"c-seed0  running   1         -      h:3 for \ds  -", lines[4]), lines[4]


@pytest.mark.parametrize("argv, message", [
    (["sweep", "status", "--study", "nope"], "no sweep journal at {out}/nope/nope.journal; run the sweep first"),
    (["sweep", "report", "--study", "nope"], "no sweep journal at {out}/nope/nope.journal; run the sweep first"),
    (["sweep", "status"], "sweep status needs a sweep file or --study NAME"),
    (["sweep", "status", "--study", "nope", "--storage", "{journal}"],
     "no study 'nope' in {journal}; studies there: other"),
    (["sweep", "status", "--study", "s", "--storage", "sqlite:///{out}/optuna.db"], "no sweep database at sqlite:///"),
    (["sweep", "status", "--study", "s", "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
     "cannot open sweep storage postgresql://u:***@127.0.0.1:1/db"),
    (["sweep", "report", "--study", "s", "--storage", "redis://x"], "storage redis://x: unknown scheme 'redis'"),
])
def test_sweep_errors_are_one_line_with_exit_code_2_and_create_nothing(argv, message, tmp_path, capsys):
    from t5lit.cli import main

    out = tmp_path / "out"
    journal = out / "other" / "other.journal"
    optuna.create_study(study_name="other", storage=StudyStorage(str(journal)).storage)
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        main([a.format(out=out, journal=journal) for a in argv] + ["--out", str(out)])
    assert err.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("t5lit: error: "), captured.err
    assert message.format(out=out, journal=journal) in lines[0] and "secret" not in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


def test_a_runs_outcome_names_failed_and_unfinished_trials():
    from t5lit.sweep import outcome

    ok = {"study": "s", "total": 3, "done": 3, "failed_jobs": [], "exit_codes": [0], "logs": "L"}
    assert outcome(ok) is None
    failed = {**ok, "failed_jobs": [("b-seed0", "TrialFailed: NaN"), ("c-seed0", "its worker died 4 time(s)")]}
    assert outcome(failed) == ("sweep s: 2 of 3 trials failed: b-seed0 (TrialFailed: NaN); c-seed0 (its worker died "
                               "4 time(s)); fix the cause, then run again with --retry-failed (`t5lit sweep status` "
                               "shows every row)")
    assert outcome({**ok, "done": 1, "exit_codes": [-9]}) == (
        "sweep s: 2 of 3 trials did not finish (worker exit codes [-9]; logs in L); run the same command to continue")
