"""Nothing lost, nothing silent, for one run: a run directory belongs to one config; every attempt is recorded;
divergence is never a result (even on the last step); a run SIGKILLed at random points of every stage, again and
again, ends with exactly the results, curves and best checkpoints of a run that was never interrupted."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from t5lit.experiment import resolve_experiment
from t5lit.pipeline import TrialFailed, run_experiment
from t5lit.registry import ConfigError
from t5lit.rundir import read_attempts

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"


def test_a_run_directory_belongs_to_one_config(tmp_path):
    exp = resolve_experiment(DEBUG, {"pretrain.steps": 2, "finetune.steps": 2, "finetune.eval_every": 2})
    run_experiment(exp, tmp_path / "run")
    other = resolve_experiment(DEBUG, {"pretrain.steps": 2, "finetune.steps": 2, "finetune.eval_every": 2,
                                       "finetune.lr": 0.002})
    with pytest.raises(ConfigError) as err:
        run_experiment(other, tmp_path / "run")
    message = str(err.value)
    assert "holds a run of another config (finetune.lr: 0.001 -> 0.002)" in message and "--restart" in message
    assert "\n" not in message
    # keys that cannot change a result may differ on resume
    same = resolve_experiment(DEBUG, {"pretrain.steps": 2, "finetune.steps": 2, "finetune.eval_every": 2,
                                      "trainer.log_every_n_steps": 5, "finetune.num_workers": 1})
    assert run_experiment(same, tmp_path / "run")["status"] == "complete"
    results = run_experiment(other, tmp_path / "run", restart=True)  # the old run is moved aside, not lost
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and (aside[0] / "results.json").is_file() and results["status"] == "complete"
    assert "lr: 0.002" in (tmp_path / "run" / "config.yaml").read_text()


def test_every_attempt_is_recorded(tmp_path):
    exp = resolve_experiment(DEBUG, {"pretrain.steps": 2, "finetune.steps": 2, "finetune.eval_every": 2})

    class Boom(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.logger.version.startswith("finetune"):
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_experiment(exp, tmp_path, callbacks=[Boom()])
    run_experiment(exp, tmp_path)
    attempts = read_attempts(tmp_path)
    assert [a["outcome"] for a in attempts] == ["failed: RuntimeError: boom", "complete"]
    assert all(a["started"] and a["ended"] and a["pid"] == os.getpid() for a in attempts)


class CorruptWeights(L.Callback):
    """Makes the given stage diverge: NaN weights before its last step (training loss) or after it (the
    validation loss of the last validation)."""

    def __init__(self, stage: str, when: str):
        self.stage, self.when = stage, when

    def _corrupt(self, trainer, module):
        with torch.no_grad():
            next(module.parameters()).fill_(float("nan"))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.when == "last_step" and trainer.logger.version.startswith(self.stage) and \
                trainer.global_step == trainer.max_steps - 1:
            self._corrupt(trainer, module)

    def on_train_batch_end(self, trainer, module, *args):
        if self.when == "after_last_step" and trainer.logger.version.startswith(self.stage) and \
                trainer.global_step == trainer.max_steps:
            self._corrupt(trainer, module)


@pytest.mark.parametrize("stage, when, fragment", [
    ("pretrain", "last_step", "training loss became nan at step 6"),
    ("pretrain", "after_last_step", "validation loss became nan at step 6"),
    ("finetune", "last_step", "training loss became nan at step 6"),
])
def test_divergence_on_the_last_step_fails_the_run(tmp_path, stage, when, fragment):
    exp = resolve_experiment(DEBUG, {"trainer.log_every_n_steps": 4})  # no regular check falls on step 6
    with pytest.raises(TrialFailed, match=fragment):
        run_experiment(exp, tmp_path, callbacks=[CorruptWeights(stage, when)])
    assert not (tmp_path / "results.json").exists()
    assert not (tmp_path / stage / ("done.json" if stage == "pretrain" else "builtin_kind/done.json")).exists()
    if stage == "pretrain":
        assert not (tmp_path / "pretrain" / "final.ckpt").exists()  # never handed on to fine-tuning
        assert not (tmp_path / "finetune").exists()
    assert read_attempts(tmp_path)[-1]["outcome"].startswith("failed: TrialFailed: ")


# ---------------------------------------------------------------------------------------------- kill anywhere
def _run(run_dir: Path, extra=()):
    return subprocess.Popen([sys.executable, "-m", "t5lit.cli", "run", str(DEBUG), "--run-dir", str(run_dir),
                             "model.overrides={dropout_rate: 0.1}", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc, timeout=300):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run hung")
    return proc.returncode, err


def _best_weights(run_dir: Path) -> dict:
    from t5lit.checkpoint import model_weights, read_checkpoint

    return model_weights(read_checkpoint(run_dir / "finetune" / "builtin_kind" / "best-builtin_kind.ckpt"))


@pytest.mark.slow
def test_a_run_killed_at_random_points_of_every_stage_ends_with_the_uninterrupted_results(tmp_path):
    started = time.time()
    code, err = _finish(_run(tmp_path / "whole"))
    assert code == 0, err[-3000:]
    duration = time.time() - started
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    whole_scores = json.loads((tmp_path / "whole" / "finetune" / "builtin_kind" / "scores.json").read_text())
    for seed in (0, 1):
        rng = random.Random(seed)  # the kill points are reproducible: delays drawn from a seeded generator
        run_dir = tmp_path / f"killed{seed}"
        kills, scale = 0, 0.8
        for _ in range(6):
            if kills == 3:
                break
            proc = _run(run_dir)
            time.sleep(rng.uniform(1.0, max(1.5, scale * duration)))
            if proc.poll() is not None:  # finished first (the machine got faster): with no kill yet, again, sooner
                if kills:
                    break
                shutil.rmtree(run_dir)
                scale /= 2
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        code, err = _finish(_run(run_dir))
        assert code == 0, err[-3000:]
        assert kills >= 1
        assert json.loads((run_dir / "results.json").read_text()) == whole  # scores, summary and curves
        scores = json.loads((run_dir / "finetune" / "builtin_kind" / "scores.json").read_text())
        assert scores == whole_scores  # every validation, and the best step per task
        best, expected = _best_weights(run_dir), _best_weights(tmp_path / "whole")
        assert best.keys() == expected.keys() and all(torch.equal(best[k], expected[k]) for k in best)
        outcomes = [a["outcome"] for a in read_attempts(run_dir)]
        # a kill before the run claimed its directory (during the imports) leaves no record
        assert outcomes[-1] == "complete" and set(outcomes) <= {"complete", "killed (no end recorded)"}
        assert outcomes.count("killed (no end recorded)") <= kills
        assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob(".*.tmp"))
