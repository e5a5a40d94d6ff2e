"""TensorBoard's HParams dashboard: one session per run, one experiment per sweep.

A run's **session** (``write_session``, called at the end of every run) is one event file in ``<run_dir>/tb/``:
its start (every setting of the experiment, flattened: ``model.arch``, ``pretrain.objective``, ...), its final
numbers as scalars (``summary/<column>``, ``summary/Average``, ``score/<task>``, ``metric/<task>/<metric>``,
``cost/<what>``) and its end. The stages' TensorBoard logs are its sub-runs (``tb/pretrain``,
``tb/finetune-<name>``), so a metric of the dashboard can be a stage's curve: ``val/loss`` in ``pretrain``.
Seeds of one sweep row (run directories ``<row>-seed<k>``) form one session group, which the dashboard
aggregates.

A sweep's **experiment** (``write_experiment``, when a sweep starts and with every report) is one record in
``<out>/<study>/hparams/``: the hyperparameters, each with its values across the sweep's runs as its domain
and those that vary flagged ``differs`` (TensorBoard lists them first and shows the first five by default),
and the metrics: the Average, each column and task's headline score, the pre-training loss curve and the
wall time. TensorBoard takes the first experiment record it finds under its logdir, so runs write none of
their own; a lone ``t5lit run`` has none, and TensorBoard then builds one from its session.

    write_session(run_dir / "tb", flatten(exp.to_dict()), run_metrics(results), group="enc_dec")
    write_experiment(out / study / "hparams", [flatten(c) for c in configs], metric_names(results_list))

Only ``tensorboard`` itself is imported (its protocol buffers and event writer): no TensorFlow, no torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

AVERAGE = "Average"
SKIPPED = ("name", "description")  # a run's name is its session's name; neither is a hyperparameter
EVENTS = "events.out.tfevents."
PRETRAIN_CURVE = ("val/loss", "pretrain")  # (tag, group): the pre-training stage's validation loss


# ------------------------------------------------------------------------------------------ values
def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"arch": "x"}}`` -> ``{"model.arch": "x"}``: numbers, strings and booleans as they are, lists
    and other values as JSON text, empty sections and nulls left out; ``name`` and ``description`` dropped."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if not prefix and key in SKIPPED:
            continue
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif value is None:
            continue
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def run_metrics(results: Mapping) -> dict[str, float]:
    """A run's final numbers by HParams metric name: ``summary/<column>`` and ``summary/Average`` (their mean, the
    report's Average), ``score/<task>`` (the headline score), ``metric/<task>/<metric>``, ``cost/<what>``."""
    from t5lit.data.tasks import TASKS
    from t5lit.evaluator import headline_score

    summary = {k: float(v) for k, v in (results.get("summary") or {}).items() if _finite(v)}
    out = {f"summary/{k}": v for k, v in summary.items()}
    if len(summary) > 1:
        out[f"summary/{AVERAGE}"] = sum(summary.values()) / len(summary)
    for task, metrics in (results.get("scores") or {}).items():
        if task in TASKS:
            score = headline_score(TASKS.get(task), metrics)
            if _finite(score):
                out[f"score/{task}"] = float(score)
        out.update({f"metric/{task}/{m}": float(v) for m, v in metrics.items() if _finite(v)})
    out.update({f"cost/{k}": float(v) for k, v in (results.get("cost") or {}).items() if _finite(v)})
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def session_group(run_dir: str | os.PathLike) -> str:
    """The session group of a run: a sweep job's row (``enc_dec-seed1`` -> ``enc_dec``), so that its seeds are
    aggregated; '' otherwise (the session is its own group)."""
    m = re.fullmatch(r"(.+)-seed\d+", Path(run_dir).name)
    return m.group(1) if m else ""


# ------------------------------------------------------------------------------------------ protocol buffers
def _summary(tag: str, data):
    """A Summary holding HParamsPluginData ``data`` under ``tag`` (what the plugin's own writers produce)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata

    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def _value(v):
    from google.protobuf import struct_pb2

    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, (int, float)):
        return struct_pb2.Value(number_value=float(v))
    return struct_pb2.Value(string_value=str(v))


def replace_events(folder: Path, events: list) -> Path:
    """Write ``events`` (Event protos) as the one event file of ``folder``, replacing the event files there: the
    new file is complete before it appears (written beside, then moved in), the old ones go after."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    old = [p for p in folder.iterdir() if p.name.startswith(EVENTS)]
    scratch = Path(tempfile.mkdtemp(prefix=".hparams-", dir=folder))
    try:
        writer = EventFileWriter(str(scratch))
        for event in events:
            writer.add_event(event)
        writer.close()
        (written,) = [p for p in scratch.iterdir() if p.name.startswith(EVENTS)]
        target = folder / written.name
        os.replace(written, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for path in old:
        if path != target:
            path.unlink(missing_ok=True)
    return target


def write_session(folder: str | os.PathLike, hparams: Mapping[str, Any], metrics: Mapping[str, float], *,
                  group: str = "", started: float | None = None, status: str = "STATUS_SUCCESS") -> Path:
    """A run's HParams session in ``folder`` (its ``tb/``): start info, each metric as a scalar, end info, in
    one event file that replaces the previous session there. Returns the file."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    now = time.time()
    start = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=started or now)
    for key, value in hparams.items():
        if value is not None:
            start.hparams[key].CopyFrom(_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status), end_time_secs=now)
    version = metadata.PLUGIN_DATA_VERSION
    events = [Event(wall_time=start.start_time_secs, step=0, summary=_summary(
        metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start, version=version)))]
    events += [Event(wall_time=now, step=0, summary=Summary(value=[Summary.Value(tag=k, simple_value=float(v))]))
               for k, v in metrics.items() if _finite(v)]
    events.append(Event(wall_time=now, step=0, summary=_summary(
        metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end, version=version))))
    return replace_events(Path(folder), events)


# ------------------------------------------------------------------------------------------ the experiment
def hparam_infos(sessions: Sequence[Mapping[str, Any]]):
    """HParamInfo protos for every key of the flattened configs ``sessions``: its type, its values as the domain
    (discrete; numbers with more than 12 distinct values as an interval) and ``differs`` when two sessions give
    it different values (or one lacks it). The varying ones first, then by name (TensorBoard's own order)."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2

    keys = sorted({k for s in sessions for k in s})
    infos = []
    for key in keys:
        values = [s.get(key) for s in sessions]
        present = [v for v in values if v is not None]
        distinct = sorted({json.dumps(v) for v in present})
        differs = len(distinct) > 1 or len(present) < len(values)
        if all(isinstance(v, bool) for v in present):
            kind = api_pb2.DATA_TYPE_BOOL
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            kind = api_pb2.DATA_TYPE_FLOAT64
        else:
            kind = api_pb2.DATA_TYPE_STRING
        info = api_pb2.HParamInfo(name=key, type=kind, differs=differs)
        decoded = [json.loads(d) for d in distinct]
        if kind == api_pb2.DATA_TYPE_FLOAT64 and len(decoded) > 12:
            info.domain_interval.CopyFrom(api_pb2.Interval(min_value=min(decoded), max_value=max(decoded)))
        else:
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(
                values=[_value(v if kind != api_pb2.DATA_TYPE_STRING else str(v)) for v in decoded]))
        infos.append(info)
    return sorted(infos, key=lambda i: (not i.differs, i.name))


def metric_names(runs: Iterable[Mapping[str, float]], columns: Sequence[str] | None = None) -> list[tuple]:
    """The metrics a sweep's experiment declares, from its runs' ``run_metrics``: (tag, group, display name),
    the Average first, then each summary column (the report's ``columns`` order when given), each task's
    headline score where it is not already a column, the pre-training validation loss and the wall time."""
    seen = list(dict.fromkeys(k for r in runs for k in r))
    summary = [k.split("/", 1)[1] for k in seen if k.startswith("summary/") and k != f"summary/{AVERAGE}"]
    if columns:
        summary = [c for c in columns if c in summary and c != AVERAGE] + [c for c in summary if c not in columns]
    out = [(f"summary/{AVERAGE}", "", AVERAGE)] if f"summary/{AVERAGE}" in seen or len(summary) > 1 else []
    out += [(f"summary/{c}", "", c) for c in summary]
    out += [(k, "", k.split("/", 1)[1]) for k in seen if k.startswith("score/") and k.split("/", 1)[1] not in summary]
    out.append((*PRETRAIN_CURVE, "pre-training val/loss"))
    out.append(("cost/wall_time_s", "", "wall time (s)"))
    return out


def write_experiment(folder: str | os.PathLike, sessions: Sequence[Mapping[str, Any]], metrics: Sequence[tuple],
                     description: str = "") -> Path:
    """The one experiment record of a sweep in ``folder`` (``<out>/<study>/hparams``), replacing the last one:
    ``hparam_infos(sessions)`` and the ``metrics`` ((tag, group, display name), ``metric_names``)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    experiment = api_pb2.Experiment(description=description, time_created_secs=time.time(),
                                    hparam_infos=hparam_infos(sessions), metric_infos=[
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag, group=group), display_name=label,
                           dataset_type=api_pb2.DATASET_VALIDATION) for tag, group, label in metrics])
    data = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
    event = Event(wall_time=time.time(), step=0, summary=_summary(metadata.EXPERIMENT_TAG, data))
    return replace_events(Path(folder), [event])
