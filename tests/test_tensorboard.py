"""TensorBoard compares a sweep: a real tiny sweep (three rows of experiments/debug_run.yaml that differ in
architecture and objective), its report, then a real TensorBoard server on the study's folder, asked through
the endpoints its dashboards use: HParams (the experiment: the varying hyperparameters first, the Average and
each task's score as metrics; the session groups: one per row, with their values), scalars (pre-training and
fine-tuning curves and perf/* of every stage of every row) and images (the report's figures). No event file
under the study is empty."""

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from t5lit.callbacks import cpu_peak_flops
from t5lit.hparams import flatten, hparam_infos, metric_names, run_metrics, session_group

DEBUG = Path(__file__).resolve().parents[1] / "experiments" / "debug_run.yaml"


def test_hparam_infos_put_what_varies_first():
    sessions = [flatten({"name": "a", "model": {"arch": "encoder_decoder", "preset": "tiny"}, "seed": 0,
                         "pretrain": {"objective_params": {"noise_density": 0.15}, "lr": 0.01}}),
                flatten({"name": "b", "model": {"arch": "prefix_lm", "preset": "tiny"}, "seed": 0,
                         "pretrain": {"objective_params": {}, "lr": 0.01}})]
    infos = hparam_infos(sessions)
    assert [(i.name, i.differs) for i in infos] == [
        ("model.arch", True), ("pretrain.objective_params.noise_density", True),  # absent in one: differs
        ("model.preset", False), ("pretrain.lr", False), ("seed", False)]          # "name" is the session's
    assert [v.string_value for v in infos[0].domain_discrete.values] == ["encoder_decoder", "prefix_lm"]
    assert session_group("/x/enc_dec_lm-seed12") == "enc_dec_lm" and session_group("/x/baseline") == ""


def test_metric_names_average_first():
    scores = {"builtin_kind": {"accuracy": 60.0, "macro_f1": 40.0}, "glue_rte": {"accuracy": 70.0}}
    runs = [run_metrics({"summary": {"builtin_kind": 50.0, "GLUE": 70.0}, "scores": scores, "cost": {"parameters": 1}})]
    assert runs[0]["summary/Average"] == 60.0 and runs[0]["score/builtin_kind"] == 50.0
    names = [m[0] for m in metric_names(runs, ["GLUE", "builtin_kind", "Average"])]
    assert names == ["summary/Average", "summary/GLUE", "summary/builtin_kind", "score/glue_rte", "val/loss",
                     "cost/wall_time_s"]


def _free_port_works() -> bool:
    with contextlib.suppress(OSError), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return True
    return False


@contextlib.contextmanager
def tensorboard(logdir: Path):
    """A TensorBoard server on a free loopback port (its own choice: --port 0); yields its URL."""
    if not _free_port_works():
        pytest.skip("cannot bind a loopback port here")
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", "0",
                             "--host", "127.0.0.1", "--load_fast=false", "--reload_interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, seen, deadline = None, [], time.time() + 120
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            if m := re.search(r"(http://127\.0\.0\.1:\d+)/", line):
                url = m.group(1)
        if url is None:
            pytest.skip("tensorboard did not start: " + "".join(seen)[-500:])
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def event_count(path: Path) -> int:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return sum(1 for _ in EventFileLoader(str(path)).Load())


@pytest.mark.slow
def test_a_sweep_compares_in_a_real_tensorboard(tmp_path):
    from t5lit.sweep import run_sweep, write_report

    grid = tmp_path / "grid.yaml"
    lm = {"pretrain.objective": "prefix_lm", "pretrain.objective_params": {}}
    grid.write_text(yaml.safe_dump({
        "base": str(DEBUG), "study": "tb", "overrides": {"finetune.tasks": ["builtin_kind", "builtin_name"]},
        "rows": [{"name": "enc_dec", "baseline": True, "overrides": {}},
                 {"name": "prefix_lm", "overrides": {"model.arch": "prefix_lm"}},
                 {"name": "enc_dec_lm", "overrides": lm}]}, sort_keys=False))
    out = tmp_path / "out"
    res = run_sweep(grid, workers=1, out_dir=out, heartbeat_interval=2, grace_period=60)
    assert res["complete"] == 3, "".join(p.read_text() for p in (out / "tb" / "logs").iterdir())[-3000:]
    rep = write_report(grid, out_dir=out)
    study = out / "tb"
    files = list(study.rglob("events.out.tfevents.*"))
    assert files and all(event_count(f) > 1 for f in files), [f for f in files if event_count(f) <= 1]
    logs = "".join(p.read_text() for p in (study / "logs").iterdir())
    assert logs.count("GPU available") == 3 * 3  # once per stage: not again through Lightning's own handler
    assert "INFO: " not in logs and "LeafSpec" not in logs and "litlogger" not in logs and "weights_only" not in logs

    with tensorboard(study) as url:
        runs, deadline = [], time.time() + 120
        while time.time() < deadline and not (f"{rep.files['hparams'].parent.name}" in runs and len(runs) >= 13):
            time.sleep(1)
            runs = get(f"{url}/data/runs")
        exp = get(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""})
        infos = exp["hparamInfos"]
        varying = [i["name"] for i in infos if i.get("differs")]
        assert {"model.arch", "pretrain.objective"} <= set(varying), varying
        assert [i["name"] for i in infos[:len(varying)]] == varying  # the dashboard shows these first
        assert "trainer.precision" not in varying and "finetune.steps" not in varying
        metrics = [(m["name"]["tag"], m["name"].get("group", "")) for m in exp["metricInfos"]]
        assert metrics[0] == ("summary/Average", "") and ("summary/builtin_kind", "") in metrics
        assert ("summary/builtin_name", "") in metrics and ("val/loss", "pretrain") in metrics

        groups = get(f"{url}/data/plugin/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 100,
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": "model.arch"}, {"hparam": "pretrain.objective"},
                          {"metric": {"tag": "summary/Average"}},
                          {"metric": {"tag": "val/loss", "group": "pretrain"}}]})
        by_name = {g["name"]: g for g in groups["sessionGroups"]}
        assert set(by_name) == {"enc_dec", "prefix_lm", "enc_dec_lm"}
        assert by_name["prefix_lm"]["hparams"]["model.arch"] == "prefix_lm"
        assert by_name["enc_dec_lm"]["hparams"]["pretrain.objective"] == "prefix_lm"
        for g in by_name.values():
            values = {v["name"]["tag"]: v["value"] for v in g["metricValues"]}
            assert 0 <= values["summary/Average"] <= 100 and values["val/loss"] > 0

        tags = get(f"{url}/data/plugin/scalars/tags")
        want = {"perf/tokens_per_sec", "perf/flops_per_sec", "train/loss"} | (
            {"perf/mfu"} if cpu_peak_flops("32-true") else set())  # MFU where the CPU's peak is known
        for row in ("enc_dec", "prefix_lm", "enc_dec_lm"):
            stages = [r for r in tags if r.startswith(f"{row}-seed0/tb/")]
            assert f"{row}-seed0/tb/pretrain" in stages and len(stages) == 3, stages  # pretrain + 2 fine-tunings
            for run in stages:
                assert want <= set(tags[run]), (run, tags[run])
            assert "val/loss" in tags[f"{row}-seed0/tb/pretrain"]
        images = get(f"{url}/data/plugin/images/tags")
        assert {"sweep/tb/scores", "sweep/tb/curves", "sweep/tb/compute"} <= set(images.get("report/tb", {}))
