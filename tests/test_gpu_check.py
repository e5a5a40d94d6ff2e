"""benchmarks/gpu_check.py: its dry run (CPU devices, tiny sizes) end to end, section by section, so that the
script is known to work before a GPU is spent on it; its one-line errors; its reading of pytest's report and
its Markdown summary. No test asserts a speed."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
C4 = Path("c4") / "c4-sample.00000-of-00001.json.gz"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dry_run(tmp_path: Path, *args: str, timeout: float = 540) -> tuple[subprocess.CompletedProcess, dict, str]:
    """The dry run in its own process group (killed whole on a hang); its exit, JSON report and Markdown."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the dry run hung")
    run = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert (out / "gpu_check.json").is_file(), stderr[-3000:]
    return run, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def failure_note(report: dict) -> str:
    return json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("status", "error", "reason")}
                       for k, v in report["sections"].items()})


@pytest.mark.slow
def test_dry_run_cuda_checks_and_throughput(tmp_path):
    run, report, md = dry_run(tmp_path, "--only", "cuda,throughput")
    assert run.returncode == 0, failure_note(report) + run.stderr[-2000:]
    assert report["mode"] == "dry-run" and report["status"] == "passed"
    assert report["sections_requested"] == ["cuda", "throughput"]
    cuda = report["sections"]["cuda"]
    names = {c["name"]: c for c in cuda["checks"]}
    assert set(names) == {"paths/encoder_decoder/sdpa", "paths/encoder_decoder/flex", "paths/decoder_only/flex",
                          "paths/prefix_lm/flex", "generate/encoder_decoder/sdpa", "generate/decoder_only/sdpa",
                          "generate/prefix_lm/sdpa", "bf16/encoder_decoder/sdpa", "bf16/prefix_lm/flex"}
    assert all(c["status"] == "passed" for c in cuda["checks"])
    for name, c in names.items():
        if name.startswith("paths/"):  # forward and the relative position bias's gradient, eager and compiled
            for run_kind in ("eager", "compiled"):
                assert c[run_kind]["bias_grad_norm"] > 0 and c[run_kind]["bias_grad_max_rel_err"] < 1e-3
        if name.startswith("bf16/"):
            assert len(c["losses"]) == 4 and c["losses"][-1] < c["losses"][0]
    tp = report["sections"]["throughput"]
    assert set(tp["models"]) == {"t5lit encoder_decoder", "transformers T5", "t5lit decoder_only", "t5lit prefix_lm"}
    for r in tp["models"].values():
        assert r["tokens_per_sec"] > 0 and r["flops_per_token"] > 0 and 0 < r["mfu"] < 1 and r["loss_finite"]
    assert tp["speed_ratio"] > 0 and tp["memory_ratio"] > 0
    assert tp["peak_is_nominal"] and all(t["met"] is None for t in tp["targets"].values())  # t5-base's on a GPU
    assert "## cuda" in md and "| paths/prefix_lm/flex | passed |" in md and "## throughput" in md
    assert "| t5lit prefix_lm |" in md and "MFU >= 45%" in md


@pytest.mark.slow
def test_dry_run_pretrains_on_the_c4_sample(tmp_path, shared_data):
    run, report, md = dry_run(tmp_path, "--only", "pretrain", "--c4", str(shared_data / C4))
    assert run.returncode == 0, failure_note(report) + run.stderr[-2000:]
    s = report["sections"]["pretrain"]
    assert s["status"] == "passed" and s["steps"] == 30
    assert s["train_loss_last"] <= 0.9 * s["train_loss_first"]
    assert len(s["val_loss"]) == 2 and (tmp_path / "out" / "data" / "c4-1000.model").is_file()
    assert "pretrain.corpus=\"files\"" in s["command"] and "## pretrain" in md


@pytest.mark.slow
def test_dry_run_ddp_kill_and_exact_resume(tmp_path, shared_data):
    run, report, md = dry_run(tmp_path, "--only", "ddp", "--c4", str(shared_data / C4))
    assert run.returncode == 0, failure_note(report) + run.stderr[-2000:]
    s = report["sections"]["ddp"]
    assert s["status"] == "passed" and s["backend"] == "gloo"
    assert s["runs"]["uninterrupted"]["steps_taken"] == 6
    assert s["runs"]["killed"]["killed"] and s["runs"]["killed"]["exit_code"] is None
    assert s["resumed_from_step"] == 2 and s["runs"]["resumed"]["steps_taken"] == 4
    assert s["bitwise_equal"] and s["max_abs_weight_diff"] == 0.0
    assert "## ddp" in md and "bitwise equal True" in md


def test_real_mode_without_a_gpu_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert load_script().main(["--out", str(tmp_path), "--only", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: no CUDA device is visible") and "--dry-run" in err and err.count("\n") == 1
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--only", "cuda,speed"], "--only: unknown section 'speed'; valid: cuda, throughput, pretrain, ddp"),
    (["--only", "ddp", "--skip", "ddp"], "no section left to run"),
    (["--only", "pretrain", "--c4", "/nonexistent/c4.json.gz"], "--c4 /nonexistent/c4.json.gz: no such file"),
])
def test_usage_errors_are_one_line(args, message, tmp_path, capsys):
    assert load_script().main(["--dry-run", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: ") and message in err and err.count("\n") == 1


def test_missing_c4_sample_names_where_it_looked(tmp_path, monkeypatch):
    gpu_check = load_script()
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path / "checkout")
    monkeypatch.setenv("T5LIT_SHARED_DATA", str(tmp_path / "data"))
    with pytest.raises(gpu_check.UsageError, match="the C4 sample c4-sample.00000-of-00001.json.gz is not in .*"
                                                   "give --c4 PATH .* or --skip pretrain,ddp"):
        gpu_check.find_c4(None)
    (tmp_path / "data" / "c4").mkdir(parents=True)
    (tmp_path / "data" / C4).write_bytes(b"")
    assert gpu_check.find_c4(None) == (tmp_path / "data" / C4).resolve()


def test_a_spent_budget_leaves_sections_out(tmp_path):
    assert load_script().main(["--dry-run", "--out", str(tmp_path), "--only", "cuda,throughput",
                               "--budget-s", "1"]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "incomplete"
    assert [s["status"] for s in report["sections"].values()] == ["skipped", "skipped"]
    assert "| cuda | skipped | – | the time budget (1 s) is spent |" in (tmp_path / "gpu_check.md").read_text()


def test_reads_pytests_junit_report(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest">'
                   '<testcase classname="tests.model.test_model" name="test_a"/>'
                   '<testcase classname="tests.model.test_model" name="test_b"><failure message="x"/></testcase>'
                   '<testcase classname="tests.model.test_model" name="test_c"><skipped message="no"/></testcase>'
                   '<testcase classname="tests.model.test_fastpaths" name="test_d"><error message="y"/></testcase>'
                   "</testsuite></testsuites>")
    assert load_script().junit_counts(xml) == {
        "passed": 1, "failed": 1, "errors": 1, "skipped": 1,
        "failures": ["tests.model.test_model::test_b", "tests.model.test_fastpaths::test_d"]}


def test_markdown_summary_of_a_gpu_report():
    """The summary of a (made-up) GPU report: every section's table, the targets met or not."""
    model = {"params": 222_903_552, "tokens_per_sec": 400_000.0, "mfu": 0.47, "peak_bytes": 40 * 2**30,
             "bytes_per_token": 500_000.0, "loss": 10.4}
    report = {
        "mode": "gpu", "started": "2026-12-02T00:00:00", "command": "python benchmarks/gpu_check.py",
        "status": "failed", "wall_s": 431.0, "sections_requested": ["cuda", "throughput", "pretrain", "ddp"],
        "environment": {"gpus": [{"name": "NVIDIA H200"}], "torch": "2.11.0", "cuda": "13.0"},
        "sections": {
            "cuda": {"status": "passed", "seconds": 120.0,
                     "suite_cuda_tests": {"passed": 9, "failed": 0, "errors": 0, "skipped": 0, "failures": []},
                     "checks": [{"name": "paths/encoder_decoder/flex", "status": "passed", "seconds": 30.0,
                                 "eager": {"logits_max_abs_err": 2e-6, "bias_grad_max_rel_err": 3e-5},
                                 "compiled": {"logits_max_abs_err": 4e-6, "bias_grad_max_rel_err": 5e-5}}]},
            "throughput": {"status": "passed", "seconds": 200.0, "peak_flops": 989e12, "peak_is_nominal": False,
                           "setting": {"preset": "t5-base", "batch": 128, "inputs": 512, "targets": 114,
                                       "precision": "bf16", "attention": "flex", "compile": True, "steps": 10},
                           "models": {"t5lit encoder_decoder": model,
                                      "transformers T5": dict(model, tokens_per_sec=150_000.0, mfu=0.18)},
                           "errors": {"t5lit prefix_lm": "torch.OutOfMemoryError: CUDA out of memory"},
                           "targets": {"mfu": {"target": 0.45, "value": 0.47, "met": True},
                                       "speed_ratio": {"target": 2.0, "value": 2.67, "met": True},
                                       "memory_ratio": {"target": 0.8, "value": 1.0, "met": False}}},
            "pretrain": {"status": "failed", "seconds": 100.0, "error": "the training loss did not fall by 10%",
                         "command": "t5lit run ...", "steps": 300, "train_loss_first": 9.0,
                         "train_loss_last": 8.5, "val_loss": [[99, 8.9], [299, 8.6]], "tokens_per_sec": None,
                         "mfu": None},
            "ddp": {"status": "skipped", "reason": "1 GPU visible; the DDP check needs 2"}}}
    md = load_script().markdown(report)
    assert md.startswith("# t5lit GPU check (gpu)") and "NVIDIA H200" in md and "**failed**" in md
    assert "| ddp | skipped | – | 1 GPU visible; the DDP check needs 2 |" in md
    assert "9 passed, 0 failed, 0 errors, 0 skipped" in md
    assert "| paths/encoder_decoder/flex | passed | 2.0e-06 / 4.0e-06 | 3.0e-05 / 5.0e-05 |" in md
    assert "| t5lit encoder_decoder | 222,903,552 | 400,000 | 47.0% | 40.00 |" in md
    assert "| t5lit prefix_lm | failed: torch.OutOfMemoryError: CUDA out of memory |" in md
    assert "| MFU >= 45% | 47.0% | yes |" in md and "| peak memory per token <= 0.8x transformers' | 1.00 | NO |" in md
    assert "300 steps: training loss 9.000 -> 8.500; validation loss 8.900 -> 8.600" in md
