"""Several machines, on one: a ``t5lit run`` with DDP over two "nodes" of one process each (gloo over
loopback), started by torchrun with two node ranks and by the variables SLURM's srun gives its tasks (Lightning's
SLURMEnvironment). The nodes share the run directory, as machines share a filesystem. Started again, the same
launch finds every stage done: nothing is retrained, and only global rank 0 writes the run's files and prints."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from t5lit.pipeline import _is_global_zero

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "t5lit.cli", "run", str(REPO / "experiments" / "debug_run.yaml")]
TWO_NODES = ["trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp", "trainer.accelerator=cpu",
             "pretrain.steps=4", "pretrain.checkpoint_every=2", "finetune.steps=2", "finetune.eval_every=2"]
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                  "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict:
    """This process's environment without any launcher's rank variables (a CI job may run inside SLURM)."""
    return {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES and not k.startswith("SLURM_")} | {
        "OMP_NUM_THREADS": "1"}


def torchrun_node(rank: int, port: int, run_dir: Path) -> tuple[list[str], dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
           "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port), *RUN[1:],
           "--run-dir", str(run_dir), *TWO_NODES]
    return cmd, clean_env()


def slurm_node(rank: int, port: int, run_dir: Path) -> tuple[list[str], dict]:
    """What ``srun`` gives task ``rank`` of ``sbatch --nodes=2 --ntasks-per-node=1`` (one task per node)."""
    env = clean_env() | {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "t5lit", "SLURM_NTASKS": "2",
                         "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_NODELIST": "127.0.0.1",
                         "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0", "SLURM_NODEID": str(rank),
                         "MASTER_PORT": str(port)}
    return [*RUN, "--run-dir", str(run_dir), *TWO_NODES], env


def launch(node, run_dir: Path, logs: Path, timeout: float = 300) -> list[tuple[int, str, str]]:
    """Both nodes at once, each in a process group of its own with its output in files (a full pipe must not
    stall a rank that the other waits for); on a hang every group is killed. [(exit code, stdout, stderr)]."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in (0, 1):
        cmd, env = node(rank, port, run_dir)
        out, err = open(logs / f"node{rank}.out", "w"), open(logs / f"node{rank}.err", "w")
        procs.append((subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=logs, env=env,
                                       start_new_session=True), out, err))
    try:
        codes = [p.wait(timeout=timeout) for p, _, _ in procs]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for p, out, err in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            out.close()
            err.close()
    if codes is None:
        pytest.fail(f"the two-node run hung; node 0 said: {(logs / 'node0.err').read_text()[-2000:]}")
    return [(codes[r], (logs / f"node{r}.out").read_text(), (logs / f"node{r}.err").read_text()) for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("node", [torchrun_node, slurm_node], ids=["torchrun", "slurm"])
def test_two_node_ddp_run_and_restart(node, tmp_path):
    run_dir = tmp_path / "run"
    nodes = launch(node, run_dir, tmp_path / "first")
    for rank, (code, _, err) in enumerate(nodes):
        assert code == 0, f"node {rank}: {err[-3000:]}"
    (_, out0, err0), (_, out1, err1) = nodes
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in err0 + out0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in err1 + out1
    assert out0.count("results:") == 1 and "results:" not in out1  # printed by global rank 0 only
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["status"] == "complete" and "builtin_kind" in saved["summary"]
    assert json.loads((run_dir / "pretrain" / "done.json").read_text())["step"] == 4
    assert (run_dir / "finetune" / "builtin_kind" / "best-builtin_kind.ckpt").exists()
    assert not list(run_dir.rglob("*.tmp"))
    # Files of the run are rank 0's alone: TensorBoard names each event file after the process that wrote it.
    writers = {p.name.rsplit(".", 2)[-2] for p in (run_dir / "tb").rglob("events.out.tfevents.*")}
    assert len(writers) == 1, sorted(writers)
    mtime = (run_dir / "pretrain" / "final.ckpt").stat().st_mtime

    # Started again: every stage is done, so no process group forms and the ranks come from the environment.
    again = launch(node, run_dir, tmp_path / "again")
    for rank, (code, _, err) in enumerate(again):
        assert code == 0, f"node {rank}: {err[-3000:]}"
    assert again[0][1].count("results:") == 1 and "results:" not in again[1][1]
    assert json.loads((run_dir / "results.json").read_text()) == saved
    assert (run_dir / "pretrain" / "final.ckpt").stat().st_mtime == mtime


@pytest.mark.parametrize("env, lead", [
    ({}, True),
    ({"RANK": "1"}, False),                                                  # torchrun's second process
    ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),                          # Lightning's launcher, node 1
    ({"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "1"}, False),  # srun's second task
    ({"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train", "SLURM_PROCID": "0"}, True),
    ({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "interactive", "SLURM_PROCID": "3"}, True),  # not Lightning's SLURM
])
def test_rank_zero_before_the_process_group_forms(env, lead, monkeypatch):
    for key in (*RANK_VARIABLES, "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _is_global_zero() is lead
