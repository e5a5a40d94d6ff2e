"""One run of ``benchmarks/gpu_check.py``'s DDP section: ``run_experiment`` on experiments/paper/baseline.yaml
with the given overrides (``trainer.devices: 2``, ``trainer.strategy: ddp``), as ``t5lit run`` would run it.
Lightning's DDP launcher starts rank 1 by running this same command again.

    python benchmarks/gpu_check_ddp.py RUN_DIR KILL_AT OVERRIDES_JSON

KILL_AT > 0: at that step rank 1 writes ``RUN_DIR.killed`` and kills itself with SIGKILL, as a lost machine
would; rank 0 is left waiting in the next gradient all-reduce until gpu_check kills the job. Rank 0 prints
``gpu_check steps N to S`` at the end of training: N steps taken in this process, S the last global step.
"""

import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402


class KillRank1(L.Callback):
    def __init__(self, run_dir: str, step: int):
        self.marker, self.step = Path(run_dir + ".killed"), step

    def on_train_batch_end(self, trainer, *args):
        if self.step and trainer.global_step == self.step and trainer.global_rank == 1:
            self.marker.write_text(str(trainer.global_step))
            os.kill(os.getpid(), signal.SIGKILL)


class CountSteps(L.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, *args):
        self.steps += 1

    def on_train_end(self, trainer, *args):
        if trainer.is_global_zero:
            print(f"gpu_check steps {self.steps} to {trainer.global_step}", flush=True)


def main() -> None:
    from t5lit.experiment import load_experiment
    from t5lit.pipeline import run_experiment

    run_dir, kill_at, overrides = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    cfg = load_experiment(ROOT / "experiments" / "paper" / "baseline.yaml", overrides)
    run_experiment(cfg, run_dir, callbacks=[CountSteps(), KillRank1(run_dir, kill_at)])


if __name__ == "__main__":
    main()
