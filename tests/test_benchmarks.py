"""The benchmark scripts run (tiny sizes, two steps), so they cannot rot; no test asserts a speed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_throughput_runs_and_writes_json(tmp_path):
    out = tmp_path / "out.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--d-model", "32", "--heads", "4",
           "--d-ff", "64", "--layers", "1", "--vocab", "256", "--batch", "2", "--inputs", "16", "--targets", "8",
           "--steps", "2", "--warmup", "1", "--threads", "1", "--archs", "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ratio ours/transformers" in run.stdout
    report = json.loads(out.read_text())
    assert set(report) >= {"setting", "environment", "args", "results", "speed_ratio", "memory_ratio"}
    assert set(report["results"]) == {"t5lit encoder_decoder", "transformers T5", "t5lit decoder_only",
                                      "t5lit prefix_lm"}
    for r in report["results"].values():
        for key in ("tokens_per_sec", "median_step_s", "peak_bytes", "bytes_per_token", "params"):
            assert r[key] > 0, key
        assert r["activation_bytes"] >= 0 and r["saved_for_backward_bytes"] > 0 and len(r["step_s"]) == 2
    ours, theirs = report["results"]["t5lit encoder_decoder"], report["results"]["transformers T5"]
    assert ours["params"] == theirs["params"]
    assert report["speed_ratio"] > 0 and report["memory_ratio"] > 0
    # The machine's matmul limit, measured in the same run, and each model's share of it; the CPU's ISA.
    limit = report["matmul_limit"]
    assert limit["fp32_tflops"] > 0 and limit["bf16_tflops"] > 0
    for dtype in ("fp32", "bf16"):  # the faster of the libraries measured
        assert limit[f"{dtype}_tflops"] == max(v for k, v in limit.items() if k.startswith(f"{dtype}_") and
                                               k.endswith("_tflops") and k != f"{dtype}_tflops")
        assert limit[f"{dtype}_library"] in ("mm", "onednn")
    assert set(report["utilisation"]) == {"t5lit encoder_decoder", "transformers T5"}
    assert all(0 < u < 1 for u in report["utilisation"].values())
    assert report["cpu"]["tier"] in ("amx", "avx512_bf16", "avx512", "avx2", "baseline")
    assert "of the fp32 matmul limit" in run.stdout and "CPU: " in run.stdout and "fast paths: " in run.stdout
    assert report["fast_paths"] == ["cpu_attention", "onednn_linear"]  # the suite's T5LIT_CPU_FAST_PATHS=all
    for key in ("device", "device_name", "torch", "transformers", "python", "command", "threads"):
        assert report["environment"][key]


@pytest.mark.slow
def test_objectives_throughput_runs(tmp_path):
    out = tmp_path / "obj.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "objectives_throughput.py"), "--examples", "64", "--batch", "16",
           "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(out.read_text())
