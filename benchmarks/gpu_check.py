"""A GPU machine's first run of t5lit, in one command (issue #15): under 8 minutes on one GPU, everything
written to one JSON file and a Markdown summary.

    python benchmarks/gpu_check.py                  # on a GPU machine: runs/gpu_check/gpu_check.{json,md}
    python benchmarks/gpu_check.py --dry-run        # the same on CPU at tiny sizes (tests/test_gpu_check.py)
    python benchmarks/gpu_check.py --only cuda,throughput --out runs/gpu_check --c4 PATH

Sections, in this order, each in processes of its own under its own time limit (``--budget-s`` caps the whole;
a section that would start after it is recorded as skipped):

- ``cuda``: the suite's CUDA-only tests (pytest -k cuda over tests/model), then ``gpu_check_cuda.py``: sdpa and
  flex, eager and compiled, against the eager reference (logits, loss, the relative-position-bias gradient,
  every gradient) for the three architectures; generation with the key/value cache against full passes;
  compiled bf16-mixed training steps finite and falling.
- ``throughput``: t5-base, bf16-mixed, batch 128, 512/114, compiled (flex attention): t5lit's encoder-decoder
  beside transformers' T5 on the same weights, and t5lit's decoder-only and prefix LM at equal parameters
  (each model a ``benchmarks/train_throughput.py`` child), with MFU against the device's bf16 peak
  (``t5lit.callbacks.peak_flops``) from the analytic FLOPs of ``ArchSpec.train_flops``. The issue's targets,
  reported, not asserted: MFU >= 45%, >= 2x transformers' tokens/s, <= 0.8x its peak memory per token.
- ``pretrain``: t5-small pre-trained for 300 steps on the C4 sample through ``t5lit run`` (the files corpus, a
  vocabulary trained on the sample with ``t5lit vocab train``, bf16-mixed, compiled as a CUDA run is): the
  training loss must fall by 10% or more.
- ``ddp``: with two or more GPUs, a 2-rank NCCL DDP pre-training whose rank 1 is killed (SIGKILL) after a
  checkpoint, the rest of the job then killed, and the run started again: it must resume from that checkpoint
  and end with the weights of an uninterrupted run (bitwise on CPU; on GPUs, whose atomic adds reorder sums,
  within 1e-3 of the largest weight). One GPU: skipped; with two, the section adds up to 4 minutes.

``--dry-run`` runs every section on CPU devices at tiny sizes (gloo for the DDP section; the model checks
without torch.compile, which tests/model/test_fastpaths.py covers on CPU), so the script is known to work
before a GPU is spent on it. No GPU visible in the real mode, or no C4 sample, is a one-line error (exit 2).
Exit 0 when every section that ran passed, 1 when one failed or the budget left one out. See "GPUs and several
machines" in README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing the package

SECTIONS = ("cuda", "throughput", "pretrain", "ddp")
C4_NAME = "c4-sample.00000-of-00001.json.gz"
CUDA_TESTS = ("tests/model/test_fastpaths.py", "tests/model/test_model.py")  # their tests named *cuda*
THROUGHPUT_MODELS = {"encoder_decoder": "t5lit encoder_decoder", "hf": "transformers T5",
                     "decoder_only": "t5lit decoder_only", "prefix_lm": "t5lit prefix_lm"}
TARGETS = {"mfu": 0.45, "speed_ratio": 2.0, "memory_ratio": 0.8}  # issue #15, for t5-base on one GPU

# Sizes and limits of each mode. GPU: the settings; the caps add up to the 8 minutes.
GPU = {
    "device": "cuda", "accelerator": "gpu", "budget_s": 470, "peak_flops": None,
    "caps": {"cuda": 150, "throughput": 210, "pretrain": 110, "ddp": 240},
    "cuda": {"compile_backend": "inductor", "train_steps": 8},
    "throughput": {"preset": "t5-base", "batch": 128, "inputs": 512, "targets": 114, "precision": "bf16",
                   "attention": "flex", "compile": True, "steps": 10, "warmup": 3},
    "pretrain": {"model.preset": "t5-small", "model.overrides": {"vocab_size": 8192}, "pretrain.steps": 300,
                 "pretrain.batch_size": 32, "pretrain.inputs_length": 512, "pretrain.checkpoint_every": 100,
                 "pretrain.val_examples": 64, "pretrain.num_workers": 4, "trainer.log_every_n_steps": 10},
    "vocab_pieces": 8000,
    "ddp": {"model.preset": "t5-small", "model.overrides": {"vocab_size": 8192}, "pretrain.steps": 30,
            "pretrain.batch_size": 16, "pretrain.inputs_length": 512, "pretrain.checkpoint_every": 10,
            "pretrain.val_examples": 32, "pretrain.num_workers": 2, "trainer.log_every_n_steps": 5},
    "ddp_kill_at": 15, "ddp_rtol": 1e-3,
}
# Dry run: CPU, tiny sizes, one thread per process; a nominal 1 TFLOP/s peak so that MFU is computed.
DRY = {
    "device": "cpu", "accelerator": "cpu", "budget_s": 900, "peak_flops": 1e12,
    "caps": {"cuda": 300, "throughput": 300, "pretrain": 300, "ddp": 400},
    "cuda": {"compile_backend": "none", "train_steps": 4, "threads": 1},
    "throughput": {"d-model": 32, "heads": 4, "d-ff": 64, "layers": 1, "vocab": 256, "batch": 2, "inputs": 16,
                   "targets": 8, "precision": "bf16", "attention": "sdpa", "compile": False, "steps": 2,
                   "warmup": 1, "threads": 1},
    "pretrain": {"model.preset": "tiny", "pretrain.steps": 30, "pretrain.batch_size": 8,
                 "pretrain.inputs_length": 64, "pretrain.checkpoint_every": 15, "pretrain.val_examples": 16,
                 "pretrain.num_workers": 0, "trainer.precision": "32-true", "trainer.log_every_n_steps": 5},
    "vocab_pieces": 1000,
    "ddp": {"model.preset": "tiny", "model.overrides": {"dropout_rate": 0.1}, "pretrain.steps": 6,
            "pretrain.batch_size": 4, "pretrain.inputs_length": 32, "pretrain.checkpoint_every": 2,
            "pretrain.val_examples": 4, "pretrain.num_workers": 0, "trainer.precision": "32-true",
            "trainer.log_every_n_steps": 2},
    "ddp_kill_at": 3, "ddp_rtol": 0.0,
}


class UsageError(Exception):
    """A mistake the user can fix: one line, exit code 2."""


# ------------------------------------------------------------------------------------------ processes
def child_env(mode: dict, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               T5LIT_CACHE=str(out / "cache"), PYTHONUNBUFFERED="1")
    if mode["device"] == "cpu":
        env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def run_logged(cmd: list[str], log: Path, timeout: float, env: dict, stdout: Path | None = None,
               until=None) -> int | None:
    """Run ``cmd`` in a process group of its own, output to ``log`` (stdout to ``stdout`` if given); the exit
    code, or None when it ran past ``timeout`` or ``until()`` became true (then the whole group is killed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err, open(stdout, "w") if stdout else err as out:
        # A new process group, not a new session: the group can be killed whole, and a job runner that ends
        # this command's session takes it down too (a new session would outlive a killed gpu_check).
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env, preexec_fn=os.setpgrp)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline or (until is not None and until()):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return None
                time.sleep(0.2)
            return proc.returncode
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): take the children down too
                os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def overrides_cli(overrides: dict) -> list[str]:
    """``key=value`` arguments of ``t5lit run``; JSON is YAML 1.2, so every value reads back as it was."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


# ------------------------------------------------------------------------------------------ set-up
def find_c4(given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"--c4 {given}: no such file; give a C4 shard (.json.gz) or skip the sections that "
                             f"read it: --skip pretrain,ddp")
        return path.resolve()
    places = [Path(p) / "c4" / C4_NAME for p in filter(None, [os.environ.get("T5LIT_SHARED_DATA")])]
    places += [ROOT / "shared" / "data" / "c4" / C4_NAME, ROOT.parent / "shared" / "data" / "c4" / C4_NAME]
    for path in places:
        if path.is_file():
            return path.resolve()
    raise UsageError(f"the C4 sample {C4_NAME} is not in {', '.join(str(p.parent) for p in places)}; give "
                     f"--c4 PATH (a C4 .json.gz shard) or --skip pretrain,ddp")


def environment(mode: dict) -> dict:
    import importlib.metadata as md

    import torch

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "lightning": version("lightning"), "transformers": version("transformers"),
           "host": platform.node(), "cpu_count": os.cpu_count(), "device": mode["device"],
           "gpus": [], "commit": None}
    if mode["device"] == "cuda":
        from t5lit.callbacks import peak_flops

        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                                "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count})
        env["peak_flops_bf16"] = peak_flops(torch.device("cuda", 0), "bf16-mixed")
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            env["commit"] = head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return env


class Context:
    def __init__(self, mode: dict, out: Path, c4: Path | None, deadline: float, python: str = sys.executable):
        self.mode, self.out, self.c4, self.deadline, self.python = mode, out, c4, deadline, python
        self.env = child_env(mode, out)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def vocabulary(self, timeout: float) -> Path:
        """The SentencePiece vocabulary of the C4 sample (``t5lit vocab train``), made once per OUT."""
        pieces = self.mode["vocab_pieces"]
        path = self.out / "data" / f"c4-{pieces}.model"
        if not path.is_file():
            rc = run_logged([self.python, "-m", "t5lit.cli", "vocab", "train", "--corpus", "files", "--option",
                             f"paths={self.c4}", "--size", str(pieces), "--out", str(path)],
                            self.out / "logs" / "vocab.log", timeout, self.env)
            if rc != 0:
                raise RuntimeError(f"t5lit vocab train failed: {tail(self.out / 'logs' / 'vocab.log', 3)}")
        return path

    def run_overrides(self, section: str, vocab: Path) -> dict:
        return {"name": f"gpu_check_{section}", "model.vocab": str(vocab), "pretrain.corpus": "files",
                "pretrain.corpus_options": {"paths": str(self.c4)}, "finetune": None,
                "trainer.accelerator": self.mode["accelerator"], "trainer.enable_progress_bar": False,
                **self.mode[section]}


# ------------------------------------------------------------------------------------------ sections
def section_cuda(ctx: Context, timeout: float) -> dict:
    """The suite's CUDA-only tests under pytest, then gpu_check_cuda.py's checks."""
    out, logs = ctx.out / "cuda", ctx.out / "logs"
    xml = out / "pytest-cuda.xml"
    started = time.monotonic()
    if ctx.mode["device"] == "cuda":
        rc = run_logged([ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS, "-k", "cuda",
                         f"--junitxml={xml}"], logs / "pytest-cuda.log", timeout / 3, ctx.env)
        suite = junit_counts(xml) if xml.exists() else {}
        suite.update(exit_code=rc, seconds=round(time.monotonic() - started, 1))
        if rc != 0 or suite.get("failed") or suite.get("errors"):
            suite["log_tail"] = tail(logs / "pytest-cuda.log")
    else:  # they skip without a GPU; tests/test_gpu_check.py checks the reading of pytest's report
        rc, suite = 0, {"skipped_reason": "dry run: the suite's CUDA tests skip without a GPU"}
    c = ctx.mode["cuda"]
    report_path = out / "checks.json"
    cmd = [ctx.python, str(BENCH / "gpu_check_cuda.py"), "--device", ctx.mode["device"], "--compile-backend",
           c["compile_backend"], "--train-steps", str(c["train_steps"]), "--json", str(report_path)]
    if c.get("threads"):
        cmd += ["--threads", str(c["threads"])]
    rc_checks = run_logged(cmd, logs / "cuda-checks.log", timeout - (time.monotonic() - started), ctx.env)
    checks = json.loads(report_path.read_text())["checks"] if report_path.exists() else []
    result = {"suite_cuda_tests": suite, "checks": checks, "exit_code": rc_checks}
    suite_ok = rc == 0 and not suite.get("failed") and not suite.get("errors")
    if rc_checks is None:
        result["status"], result["error"] = "timeout", f"the checks ran past their limit after {len(checks)} checks"
    elif rc_checks not in (0, 1) or not checks:
        result["status"], result["error"] = "error", tail(logs / "cuda-checks.log", 5)
    else:
        result["status"] = "passed" if suite_ok and rc_checks == 0 else "failed"
    return result


def junit_counts(xml: Path) -> dict:
    """passed / failed / errors / skipped counts and the names of failing tests from pytest's JUnit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        kind = "failed" if "failure" in kinds else "errors" if "error" in kinds else \
            "skipped" if "skipped" in kinds else "passed"
        counts[kind] += 1
        if kind in ("failed", "errors"):
            counts["failures"].append(f"{case.get('classname')}::{case.get('name')}")
    return counts


def throughput_flops(t: dict, which: str) -> float:
    """Matmul FLOPs of one training example of ``which`` as train_throughput.py builds it (decoder-only
    models: one stack as deep as encoder + decoder over the inputs + targets row)."""
    import train_throughput

    from t5lit.config import ARCHITECTURES

    a = argparse.Namespace(preset=t.get("preset"), dropout=0.0, attention=t.get("attention", "sdpa"),
                           d_model=t.get("d-model", 256), heads=t.get("heads", 8), d_ff=t.get("d-ff", 1024),
                           layers=t.get("layers", 4), vocab=t.get("vocab", 8192))
    cfg = train_throughput.build_config(a)
    arch = "encoder_decoder" if which == "hf" else which
    if not ARCHITECTURES.get(arch).has_encoder:
        cfg = cfg.replace(arch=arch, num_encoder_layers=0,
                          num_decoder_layers=cfg.num_encoder_layers + cfg.num_decoder_layers)
        return cfg.spec.train_flops(cfg, 0, t["inputs"] + t["targets"])
    return cfg.spec.train_flops(cfg, t["inputs"], t["targets"])


def section_throughput(ctx: Context, timeout: float) -> dict:
    """Each model in its own train_throughput.py child (peak memory is its own), then MFU and the targets."""
    sys.path.insert(0, str(BENCH))
    t = ctx.mode["throughput"]
    args = ["--device", ctx.mode["device"]]
    for key, value in t.items():
        if isinstance(value, bool):
            args += [f"--{key}"] if value else []
        else:
            args += [f"--{key}", str(value)]
    peak = ctx.mode["peak_flops"] or _peak_flops()
    result = {"setting": dict(t, device=ctx.mode["device"]), "peak_flops": peak,
              "peak_is_nominal": bool(ctx.mode["peak_flops"]), "models": {}, "errors": {}}
    started, timed_out = time.monotonic(), False
    for which, label in THROUGHPUT_MODELS.items():
        left = timeout - (time.monotonic() - started)
        log, stdout = ctx.out / "logs" / f"throughput-{which}.log", ctx.out / "throughput" / f"{which}.out"
        stdout.parent.mkdir(parents=True, exist_ok=True)
        rc = run_logged([ctx.python, str(BENCH / "train_throughput.py"), *args, "--which", which, "--child"], log,
                        max(left, 1), ctx.env, stdout=stdout) if left > 5 else None
        if rc != 0:
            result["errors"][label] = "ran past the section's time limit" if rc is None else tail(log, 8)
            timed_out = timed_out or rc is None
            continue
        r = json.loads(stdout.read_text().strip().splitlines()[-1])
        tokens_per_example = t["inputs"] + t["targets"]
        r["flops_per_token"] = throughput_flops(t, which) / tokens_per_example
        r["mfu"] = r["tokens_per_sec"] * r["flops_per_token"] / peak if peak else None
        r["loss_finite"] = math.isfinite(r["loss"])
        result["models"][label] = r
    ours, theirs = result["models"].get(THROUGHPUT_MODELS["encoder_decoder"]), result["models"].get("transformers T5")
    if ours and theirs:
        result["speed_ratio"] = ours["tokens_per_sec"] / theirs["tokens_per_sec"]
        result["memory_ratio"] = ours["bytes_per_token"] / theirs["bytes_per_token"]
    values = {"mfu": ours.get("mfu") if ours else None, "speed_ratio": result.get("speed_ratio"),
              "memory_ratio": result.get("memory_ratio")}
    applies = not result["peak_is_nominal"]  # the targets are t5-base's on a GPU, not the dry run's
    result["targets"] = {k: {"target": v, "value": values[k],
                             "met": None if values[k] is None or not applies else
                             (values[k] <= v if k == "memory_ratio" else values[k] >= v)}
                         for k, v in TARGETS.items()}
    complete = len(result["models"]) == len(THROUGHPUT_MODELS)
    finite = all(r["loss_finite"] for r in result["models"].values())
    result["status"] = "passed" if complete and finite else "timeout" if timed_out else "failed"
    if not finite:
        result["error"] = "a non-finite training loss: " + ", ".join(
            label for label, r in result["models"].items() if not r["loss_finite"])
    elif result["errors"]:
        result["error"] = f"{', '.join(result['errors'])} failed: {next(iter(result['errors'].values()))}"
    return result


def _peak_flops() -> float | None:
    import torch

    from t5lit.callbacks import peak_flops

    return peak_flops(torch.device("cuda", 0), "bf16-mixed")


def scalars(run_dir: Path, stage: str = "pretrain") -> dict[str, list[list[float]]]:
    """TensorBoard scalars of a stage: {tag: [[step, value], ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for events in sorted((run_dir / "tb" / stage).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend([e.step, e.value] for e in acc.Scalars(tag))
    return out


def section_pretrain(ctx: Context, timeout: float) -> dict:
    """t5-small on the C4 sample through ``t5lit run``; the training loss must fall by >= 10%."""
    started = time.monotonic()
    vocab = ctx.vocabulary(timeout / 3)
    run_dir = ctx.out / "pretrain"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, not a resumed one
    overrides = ctx.run_overrides("pretrain", vocab)
    cmd = [ctx.python, "-m", "t5lit.cli", "run", str(ROOT / "experiments" / "paper" / "baseline.yaml"),
           *overrides_cli(overrides), "--run-dir", str(run_dir)]
    log = ctx.out / "logs" / "pretrain.log"
    rc = run_logged(cmd, log, timeout - (time.monotonic() - started), ctx.env)
    result = {"command": " ".join(["t5lit", *cmd[3:]]), "exit_code": rc, "run_dir": str(run_dir)}
    if rc != 0:
        result.update(status="timeout" if rc is None else "failed", error=tail(log, 8))
        return result
    s = scalars(run_dir)
    train = [v for _, v in s.get("train/loss", [])]
    if not train:
        return dict(result, status="failed", error="no train/loss was logged")
    k = max(1, len(train) // 10)
    first, last = train[0], sum(train[-k:]) / k
    result.update(steps=json.loads((run_dir / "pretrain" / "done.json").read_text())["step"],
                  train_loss_first=first, train_loss_last=last, train_loss=s["train/loss"],
                  val_loss=s.get("val/loss", []), tokens_per_sec=_last(s, "perf/tokens_per_sec"),
                  mfu=_last(s, "perf/mfu"))
    result["status"] = "passed" if all(map(math.isfinite, train)) and last <= 0.9 * first else "failed"
    if result["status"] == "failed":
        result["error"] = f"the training loss did not fall by 10%: {first:.3f} -> {last:.3f}"
    return result


def _last(s: dict, tag: str) -> float | None:
    return s[tag][-1][1] if s.get(tag) else None


def section_ddp(ctx: Context, timeout: float) -> dict:
    """Three 2-rank runs: uninterrupted; killed (rank 1 SIGKILLed after a checkpoint, then the job); resumed."""
    import torch

    if ctx.mode["device"] == "cuda" and torch.cuda.device_count() < 2:
        return {"status": "skipped", "reason": f"{torch.cuda.device_count()} GPU visible; the DDP check needs 2"}
    from t5lit.checkpoint import model_weights, read_checkpoint

    started = time.monotonic()
    vocab = ctx.vocabulary(timeout / 4)
    overrides = dict(ctx.run_overrides("ddp", vocab), **{"trainer.devices": 2, "trainer.strategy": "ddp"})
    steps, every, kill_at = overrides["pretrain.steps"], overrides["pretrain.checkpoint_every"], ctx.mode["ddp_kill_at"]
    base = ctx.out / "ddp"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    result = {"backend": "nccl" if ctx.mode["device"] == "cuda" else "gloo", "steps": steps,
              "checkpoint_every": every, "kill_at_step": kill_at, "runs": {}}

    def launch(name: str, run_dir: Path, kill: int) -> int | None:
        marker = Path(str(run_dir) + ".killed")
        log = ctx.out / "logs" / f"ddp-{name}.log"
        cmd = [ctx.python, str(BENCH / "gpu_check_ddp.py"), str(run_dir), str(kill), json.dumps(overrides)]
        t0 = time.monotonic()
        rc = run_logged(cmd, log, timeout - (time.monotonic() - started), ctx.env,
                        until=marker.exists if kill else None)
        text = log.read_text(errors="replace") if log.exists() else ""
        killed = marker.exists()
        marker.unlink(missing_ok=True)
        result["runs"][name] = {"exit_code": rc, "seconds": round(time.monotonic() - t0, 1), "killed": killed,
                                "steps_taken": _steps_taken(text)}
        return rc

    for name, run_dir, kill in (("uninterrupted", "whole", 0), ("killed", "resumed", kill_at),
                                ("resumed", "resumed", 0)):
        rc = launch(name, base / run_dir, kill)
        if name == "killed" and not result["runs"][name]["killed"]:
            return dict(result, status="failed", error="the run to be killed never reached its kill step")
        if name != "killed" and rc != 0:
            return dict(result, status="timeout" if rc is None else "failed",
                        error=tail(ctx.out / "logs" / f"ddp-{name}.log", 8))
    want = model_weights(read_checkpoint(base / "whole" / "pretrain" / "final.ckpt"))
    got = model_weights(read_checkpoint(base / "resumed" / "pretrain" / "final.ckpt"))
    common = sorted(want.keys() & got.keys())
    diff = max(float((got[k].float() - want[k].float()).abs().max()) for k in common)
    scale = max(float(want[k].float().abs().max()) for k in common)
    resumed_from = (kill_at // every) * every
    result.update(resumed_from_step=resumed_from, same_keys=got.keys() == want.keys(),
                  bitwise_equal=got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in common),
                  max_abs_weight_diff=diff, max_rel_weight_diff=diff / scale)
    expected = steps - resumed_from
    ok = (result["same_keys"] and result["runs"]["resumed"]["steps_taken"] == expected
          and result["max_rel_weight_diff"] <= ctx.mode["ddp_rtol"])
    result["status"] = "passed" if ok else "failed"
    if not ok:
        result["error"] = (f"resumed run took {result['runs']['resumed']['steps_taken']} steps (want {expected}), "
                           f"weights differ by {result['max_rel_weight_diff']:.3g} relative "
                           f"(allowed {ctx.mode['ddp_rtol']:g})")
    return result


def _steps_taken(log_text: str) -> int | None:
    lines = [ln for ln in log_text.splitlines() if ln.startswith("gpu_check steps ")]
    return int(lines[-1].split()[2]) if lines else None


RUNNERS = {"cuda": section_cuda, "throughput": section_throughput, "pretrain": section_pretrain, "ddp": section_ddp}


# ------------------------------------------------------------------------------------------ report
def _f(v, fmt: str = ",.0f", missing: str = "–") -> str:
    return missing if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    """The summary of a report: a table per section."""
    env = report["environment"]
    gpus = ", ".join(g["name"] for g in env.get("gpus", [])) or env.get("device", "cpu")
    lines = [f"# t5lit GPU check ({report['mode']})", "",
             f"{report['started']} on {gpus}; torch {env.get('torch')} (CUDA {env.get('cuda')}), lightning "
             f"{env.get('lightning')}, transformers {env.get('transformers')}, commit {env.get('commit')}.",
             "", f"`{report['command']}`: **{report['status']}** in {report.get('wall_s', 0):.0f} s.", "",
             "| section | status | seconds | note |", "|---|---|---|---|"]
    for name in report["sections_requested"]:
        s = report["sections"].get(name, {"status": "not run"})
        note = s.get("reason") or s.get("error") or ""
        lines.append(f"| {name} | {s['status']} | {_f(s.get('seconds'), '.0f')} | "
                     f"{note.splitlines()[0][:120] if note else ''} |")
    s = report["sections"].get("cuda")
    if s and s.get("checks") is not None:
        suite = s.get("suite_cuda_tests", {})
        failing = ": " + ", ".join(suite["failures"]) if suite.get("failures") else ""
        counts = suite.get("skipped_reason") or (
            f"{suite.get('passed', 0)} passed, {suite.get('failed', 0)} failed, {suite.get('errors', 0)} errors, "
            f"{suite.get('skipped', 0)} skipped{failing}")
        lines += ["", "## cuda", "", f"The suite's CUDA tests (pytest -k cuda, tests/model): {counts}.",
                  "", "| check | status | logits err (eager / compiled) | bias grad rel. err (eager / compiled) | "
                  "losses | s |", "|---|---|---|---|---|---|"]
        for c in s["checks"]:
            e, k = c.get("eager", {}), c.get("compiled", {})
            losses = c.get("losses")
            lines.append(f"| {c['name']} | {c['status']}{': ' + c['error'][:80] if c.get('error') else ''} | "
                         f"{_f(e.get('logits_max_abs_err'), '.1e')} / {_f(k.get('logits_max_abs_err'), '.1e')} | "
                         f"{_f(e.get('bias_grad_max_rel_err'), '.1e')} / {_f(k.get('bias_grad_max_rel_err'), '.1e')} | "
                         f"{f'{losses[0]:.3f} -> {losses[-1]:.3f}' if losses else '–'} | {c.get('seconds', 0):.0f} |")
    s = report["sections"].get("throughput")
    if s and "models" in s:
        t = s["setting"]
        lines += ["", "## throughput", "",
                  f"{t.get('preset') or 'tiny'}, batch {t['batch']}, {t['inputs']}/{t['targets']}, "
                  f"{t['precision']}, attention {t['attention']}, {'compiled' if t.get('compile') else 'not compiled'}"
                  f" (transformers: eager), {t['steps']} timed steps; peak "
                  f"{_f(s['peak_flops'] and s['peak_flops'] / 1e12, '.0f')} TFLOP/s"
                  f"{' (nominal: dry run)' if s.get('peak_is_nominal') else ''}.", "",
                  "| model | params | tokens/s | MFU | peak GiB | bytes/token | loss |",
                  "|---|---|---|---|---|---|---|"]
        for label, r in s["models"].items():
            lines.append(f"| {label} | {r['params']:,} | {r['tokens_per_sec']:,.0f} | {_f(r.get('mfu'), '.1%')} | "
                         f"{r['peak_bytes'] / 2**30:.2f} | {r['bytes_per_token']:,.0f} | {r['loss']:.3f} |")
        for label, err in s.get("errors", {}).items():
            lines.append(f"| {label} | failed: {err.splitlines()[-1][:100] if err else ''} | | | | | |")
        lines += ["", "| target (t5-base) | value | met |", "|---|---|---|"]
        names = {"mfu": "MFU >= 45%", "speed_ratio": "tokens/s >= 2x transformers'",
                 "memory_ratio": "peak memory per token <= 0.8x transformers'"}
        for key, tgt in s["targets"].items():
            value = _f(tgt["value"], ".1%" if key == "mfu" else ".2f")
            lines.append(f"| {names[key]} | {value} | {'–' if tgt['met'] is None else 'yes' if tgt['met'] else 'NO'} |")
    s = report["sections"].get("pretrain")
    if s and "train_loss_first" in s:
        lines += ["", "## pretrain", "", f"`{s['command']}`", "",
                  f"{s['steps']} steps: training loss {s['train_loss_first']:.3f} -> {s['train_loss_last']:.3f}; "
                  f"validation loss {' -> '.join(f'{v:.3f}' for _, v in s['val_loss']) or '–'}; "
                  f"{_f(s.get('tokens_per_sec'))} tokens/s, MFU {_f(s.get('mfu'), '.1%')} (perf/ at the last log)."]
    s = report["sections"].get("ddp")
    if s and "runs" in s:
        lines += ["", "## ddp", "", f"2 ranks ({s['backend']}), {s['steps']} steps, a checkpoint every "
                  f"{s['checkpoint_every']}, rank 1 killed at step {s['kill_at_step']}.", "",
                  "| run | exit code | killed | steps taken | s |", "|---|---|---|---|---|"]
        for name, r in s["runs"].items():
            lines.append(f"| {name} | {r['exit_code']} | {r['killed']} | {r['steps_taken']} | {r['seconds']:.0f} |")
        if "max_rel_weight_diff" in s:
            lines += ["", f"Resumed from step {s['resumed_from_step']}; final weights against the uninterrupted "
                      f"run: bitwise equal {s['bitwise_equal']}, max abs diff {s['max_abs_weight_diff']:.3g} "
                      f"({s['max_rel_weight_diff']:.3g} of the largest weight)."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    from t5lit.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "gpu_check.json", report)
    atomic_write_text(out / "gpu_check.md", markdown(report))


# ------------------------------------------------------------------------------------------ main
def parse_sections(only: str | None, skip: str | None) -> list[str]:
    def names(text: str, flag: str) -> list[str]:
        got = [n.strip() for n in text.split(",") if n.strip()]
        for n in got:
            if n not in SECTIONS:
                raise UsageError(f"{flag}: unknown section {n!r}; valid: {', '.join(SECTIONS)}")
        return got

    chosen = names(only, "--only") if only else list(SECTIONS)
    dropped = set(names(skip, "--skip")) if skip else set()
    return [n for n in SECTIONS if n in chosen and n not in dropped]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU devices, tiny sizes: check this script")
    p.add_argument("--out", default=None, help="output folder (default runs/gpu_check, or runs/gpu_check_dry_run)")
    p.add_argument("--c4", default=None, help=f"the C4 sample (default: {C4_NAME} under $T5LIT_SHARED_DATA/c4, "
                                              f"shared/data/c4 in the checkout, or ../shared/data/c4 beside it)")
    p.add_argument("--only", default=None, help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    p.add_argument("--skip", default=None, help="comma-separated sections to leave out")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget of the whole check "
                                                                "(default: 470 s on a GPU)")
    a = p.parse_args(argv)
    mode = DRY if a.dry_run else GPU
    started, wall0 = datetime.datetime.now().isoformat(timespec="seconds"), time.monotonic()
    try:
        sections = parse_sections(a.only, a.skip)
        if not sections:
            raise UsageError("no section left to run (--only / --skip)")
        c4 = find_c4(a.c4) if {"pretrain", "ddp"} & set(sections) else None
        import torch

        if not a.dry_run and not torch.cuda.is_available():
            raise UsageError(f"no CUDA device is visible (torch {torch.__version__}, CUDA build "
                             f"{torch.version.cuda}); run it on a GPU machine, or check the script with --dry-run")
    except UsageError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    out = Path(a.out or ("runs/gpu_check_dry_run" if a.dry_run else "runs/gpu_check")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = a.budget_s or mode["budget_s"]
    ctx = Context(mode, out, c4, wall0 + budget)
    report = {"version": 1, "mode": "dry-run" if a.dry_run else "gpu", "started": started,
              "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "budget_s": budget, "environment": environment(mode), "sections_requested": sections,
              "sections": {}, "status": "running", "c4": str(c4) if c4 else None}
    write_report(out, report)
    for name in sections:
        left = ctx.left()
        if left < 20:
            report["sections"][name] = {"status": "skipped", "budget_spent": True,
                                        "reason": f"the time budget ({budget:.0f} s) is spent"}
            continue
        print(f"[{time.monotonic() - wall0:5.0f} s] {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            result = RUNNERS[name](ctx, min(mode["caps"][name], left))
        except Exception as err:  # one broken section must not lose the others' results
            result = {"status": "error", "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = round(time.monotonic() - t0, 1)
        report["sections"][name] = result
        note = (result.get("reason") or result.get("error") or "").strip().splitlines()
        print(f"[{time.monotonic() - wall0:5.0f} s] {name}: {result['status']}"
              f"{f' ({note[-1][:200]})' if note else ''}", flush=True)
        write_report(out, report)
    ran = [s for s in report["sections"].values() if s["status"] != "skipped"]
    if any(s["status"] != "passed" for s in ran):
        report["status"] = "failed"
    elif any(s.get("budget_spent") for s in report["sections"].values()):
        report["status"] = "incomplete"  # what ran passed; a section had no time left
    else:
        report["status"] = "passed" if ran else "skipped"  # skipped: e.g. only ddp, on one GPU
    report["wall_s"] = round(time.monotonic() - wall0, 1)
    write_report(out, report)
    print(f"{report['status']} in {report['wall_s']:.0f} s: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return 0 if report["status"] in ("passed", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
