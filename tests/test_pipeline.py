"""One experiment end to end: pre-train -> fine-tune -> evaluate -> results.json, and resume."""

import json
from pathlib import Path

import pytest

from t5lit.experiment import load_experiment
from t5lit.pipeline import model_overrides, run_experiment, summarize

REPO = Path(__file__).resolve().parents[1]


def test_depth_factor_halves_the_preset():
    over = model_overrides({"preset": "t5-base", "arch": "encoder_decoder", "depth_factor": 0.5, "overrides": {}})
    assert over == {"num_encoder_layers": 6, "num_decoder_layers": 6}
    over = model_overrides({"preset": "t5-base", "arch": "prefix_lm", "depth_factor": 0.5, "overrides": {}})
    assert over == {"num_encoder_layers": 0, "num_decoder_layers": 6}


def test_summary_columns():
    scores = {"squad": {"exact_match": 80.0, "f1": 88.0}, "builtin_kind": {"accuracy": 50.0, "f1": 40.0}}
    assert summarize(scores, ["squad", "builtin_kind"]) == {"SQuAD": 80.0, "builtin_kind": 45.0}


@pytest.mark.slow
def test_debug_run_end_to_end_and_resume(tmp_path):
    cfg = load_experiment(REPO / "experiments" / "debug_run.yaml")
    results = run_experiment(cfg, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "complete" and saved["summary"] == results["summary"]
    assert "builtin_kind" in saved["scores"] and "builtin_kind" in saved["summary"]
    assert {"accuracy"} <= set(saved["scores"]["builtin_kind"])
    assert (tmp_path / "pretrain" / "done.json").exists()
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    # Started again, every stage is done: nothing is retrained and the results are the same.
    mtime = (tmp_path / "pretrain" / "final.ckpt").stat().st_mtime
    again = run_experiment(cfg, tmp_path)
    assert again["scores"] == results["scores"]
    assert (tmp_path / "pretrain" / "final.ckpt").stat().st_mtime == mtime


@pytest.mark.slow
def test_same_seed_same_results_other_seed_other_weights(tmp_path):
    cfg = load_experiment(REPO / "experiments" / "debug_run.yaml", {"finetune.steps": 2, "finetune.eval_every": 2})
    first = run_experiment(cfg, tmp_path / "a")
    assert run_experiment(cfg, tmp_path / "b") == first  # a replicate is a pure function of its seed
    other = run_experiment({**cfg, "seed": 1}, tmp_path / "c")
    assert other["val_curves"] != first["val_curves"]


class Crash(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_crashed_run_resumes_to_the_uninterrupted_result(tmp_path, stage):
    import lightning as L

    class CrashAt(L.Callback):
        """Dies after the checkpoint of step 3 has been written, in the given stage."""

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 4 and trainer.logger.version.startswith(stage):
                raise Crash(stage)

    cfg = load_experiment(REPO / "experiments" / "debug_run.yaml", {"model.overrides": {"dropout_rate": 0.1}})
    whole = run_experiment(cfg, tmp_path / "whole")
    with pytest.raises(Crash):
        run_experiment(cfg, tmp_path / "crashed", callbacks=[CrashAt()])
    assert not (tmp_path / "crashed" / "results.json").exists()

    class CountSteps(L.Callback):
        def __init__(self):
            self.steps: dict[str, int] = {}

        def on_train_batch_end(self, trainer, *args):
            self.steps[trainer.logger.version] = self.steps.get(trainer.logger.version, 0) + 1

    count = CountSteps()
    assert run_experiment(cfg, tmp_path / "crashed", callbacks=[count]) == whole
    crashed = next(v for v in count.steps if v.startswith(stage))
    assert count.steps[crashed] == 3  # steps 4..6 only: it resumed from the step-3 checkpoint
    assert "pretrain" not in count.steps or stage == "pretrain"  # a finished stage is not run again


@pytest.mark.slow
def test_ddp_run_on_two_cpu_processes_and_resume(tmp_path):
    """Lightning's DDP launcher re-runs the command for rank 1, which runs the same pipeline: checkpoint saves
    are collective, rank 0 writes the run's files, and the other rank waits for final.ckpt before reading it."""
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "t5lit.cli", "run", str(REPO / "experiments" / "debug_run.yaml"),
           "--run-dir", str(tmp_path), "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]

    def run():  # in its own process group: a hung rank (a mismatched collective) is killed with its parent
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the DDP run hung")
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in first.stderr + first.stdout
    assert first.stdout.count("results:") == 1  # printed by rank 0 only
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "complete" and "builtin_kind" in saved["summary"]
    assert (tmp_path / "pretrain" / "final.ckpt").exists() and not list(tmp_path.rglob("*.tmp"))
    assert (tmp_path / "finetune" / "builtin_kind" / "best-builtin_kind.ckpt").exists()
    mtime = (tmp_path / "pretrain" / "final.ckpt").stat().st_mtime
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text()) == saved
    assert (tmp_path / "pretrain" / "final.ckpt").stat().st_mtime == mtime


_DDP_DRIVER = '''
import json, sys
import lightning as L
from t5lit.experiment import load_experiment
from t5lit.pipeline import run_experiment

experiment, run_dir, crash_stage = sys.argv[1], sys.argv[2], sys.argv[3]

class CrashAt(L.Callback):
    def on_train_batch_end(self, trainer, *args):  # every rank, after the step-3 checkpoint
        if trainer.global_step == 4 and trainer.logger.version.startswith(crash_stage):
            raise SystemExit(3)

class CountSteps(L.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, *args):
        self.steps += 1

    def on_train_end(self, trainer, *args):
        if trainer.is_global_zero:
            print("steps", trainer.logger.version, self.steps, flush=True)
        self.steps = 0

cfg = load_experiment(experiment, {"model.overrides": {"dropout_rate": 0.1}, "trainer.devices": 2,
                                   "trainer.strategy": "ddp", "trainer.accelerator": "cpu"})
run_experiment(cfg, run_dir, callbacks=[CountSteps()] + ([CrashAt()] if crash_stage != "none" else []))
'''


@pytest.mark.slow
def test_a_crashed_ddp_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Two ranks die after a mid-stage checkpoint; started again, the run ends with exactly the results of
    a DDP run that was never interrupted (each rank's batches and dropout are functions of seed, step, rank)."""
    import os
    import signal
    import subprocess
    import sys

    driver = tmp_path / "driver.py"
    driver.write_text(_DDP_DRIVER)

    def run(run_dir, crash):
        proc = subprocess.Popen([sys.executable, str(driver), str(REPO / "experiments" / "debug_run.yaml"),
                                 str(tmp_path / run_dir), crash], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the DDP run hung")
        return proc.returncode, out, err

    code, out, err = run("whole", "none")
    assert code == 0, err[-3000:]
    assert "steps pretrain 6" in out and "steps finetune-builtin_kind 6" in out
    code, out, err = run("crashed", "finetune")
    assert code != 0 and not (tmp_path / "crashed" / "results.json").exists()
    assert (tmp_path / "crashed" / "finetune" / "builtin_kind" / "last.ckpt").exists()
    code, out, err = run("crashed", "none")
    assert code == 0, err[-3000:]
    # the finished pre-training is not run again; fine-tuning resumed at its step-3 checkpoint
    assert "steps pretrain" not in out and "steps finetune-builtin_kind 3" in out, out
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((tmp_path / "crashed" / "results.json").read_text()) == whole
