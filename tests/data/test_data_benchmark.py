"""benchmarks/data_throughput.py runs (tiny settings), so that it cannot rot; no test asserts a speed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_data_throughput_runs_and_writes_json(tmp_path, shared_data):
    out = tmp_path / "data.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "data_throughput.py"), "--c4",
           str(shared_data / "c4" / "c4-sample.00000-of-00001.json.gz"), "--vocab", "builtin", "--seconds", "0.2",
           "--times", "0.2", "--skip-padding", "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [(r["objective"], r["corpus"]) for r in report["throughput"]] == [
        ("span_corruption", "files"), ("span_corruption", "c4"), ("iid_denoising", "files"), ("iid_denoising", "c4")]
    assert all(r["examples_per_s"] > 0 for r in report["throughput"])
    assert report["first_batch"]["large"]["shards"] >= 1 and report["cache"]["tokens_per_s"] > 0
