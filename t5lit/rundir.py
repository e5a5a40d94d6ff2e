"""A run directory belongs to one experiment, and remembers every attempt at running it.

``claim(run_dir, exp)`` is called before any stage runs. A new directory gets the resolved ``config.yaml``; a
directory that already holds one must hold the same experiment (so resuming is resuming, and old results are
never returned for a new config): otherwise it is refused in one line naming the keys that differ, and
``restart=True`` (``t5lit run --restart``) moves the old run aside to ``<run_dir>.replaced-<time>`` (nothing a
user ran is deleted) and starts afresh. Keys that cannot change a result may differ (``RESUME_FREE``).

``attempt(run_dir)`` records each attempt in ``attempts.json`` (written atomically): when it started, on which
host and process, with which command, when it ended and how (``complete``, ``failed: <reason>``,
``interrupted``); an attempt that never recorded its end (a SIGKILL, a power cut) is marked ``killed`` by the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from t5lit.io import atomic_write_json, atomic_write_text
from t5lit.registry import ConfigError

# Keys a resumed run may change: how fast or how loudly it runs, never what it computes.
RESUME_FREE = ("description", "pretrain.num_workers", "finetune.num_workers", "trainer.log_every_n_steps",
               "trainer.enable_progress_bar")


def _flat(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(_flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """``["finetune.lr: 0.001 -> 0.0001", ...]`` for every key whose value differs (RESUME_FREE aside)."""
    a, b = _flat(old), _flat(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys
            if not any(k == f or k.startswith(f + ".") for f in RESUME_FREE)]


def claim(run_dir: Path, exp, *, restart: bool = False, lead: bool = True) -> None:
    """Make ``run_dir`` the directory of ``exp`` (see the module docstring). Only the lead process (global rank
    0) moves or writes anything; the other ranks of a DDP run only check."""
    from t5lit.experiment import yaml_load

    config = run_dir / "config.yaml"
    new = exp.to_dict()
    if config.is_file():
        try:
            old = yaml_load(config.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            old = {"<unreadable config.yaml>": True}
        diffs = config_differences(old if isinstance(old, dict) else {}, new)
        if diffs and not (restart and lead):
            if restart:  # a DDP rank > 0: the lead has just moved the old run aside and written this config
                return
            more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise ConfigError(f"run directory {run_dir} holds a run of another config ({'; '.join(diffs[:3])}{more}); "
                              "use a new --run-dir, or --restart to move the old run aside and start again")
        if diffs and lead:
            aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(run_dir, aside)
            print(f"t5lit: moved the run of the old config to {aside}", file=sys.stderr)
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not config.is_file():
            atomic_write_text(config, yaml.safe_dump(new, sort_keys=False))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_attempts(run_dir: Path) -> list[dict]:
    path = run_dir / "attempts.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


@contextlib.contextmanager
def attempt(run_dir: Path, *, lead: bool = True, what: str = "run") -> Iterator[dict]:
    """Record one attempt (``what``: run, or the stages of a ``t5lit fit``) in ``attempts.json``."""
    if not lead:
        yield {}
        return
    attempts = read_attempts(run_dir)
    for a in attempts:
        if a.get("ended") is None:
            a["ended"], a["outcome"] = None, a.get("outcome") or "killed (no end recorded)"
    entry = {"started": _now(), "host": socket.gethostname(), "pid": os.getpid(), "what": what,
             "command": " ".join(sys.argv), "ended": None, "outcome": None}
    attempts.append(entry)
    atomic_write_json(run_dir / "attempts.json", attempts)
    try:
        yield entry
        entry["outcome"] = "complete"
    except KeyboardInterrupt:
        entry["outcome"] = "interrupted"
        raise
    except BaseException as err:  # recorded, then raised on unchanged
        reason = (str(err).strip().splitlines() or [""])[0][:300]
        entry["outcome"] = f"failed: {type(err).__name__}: {reason}" if reason else f"failed: {type(err).__name__}"
        raise
    finally:
        entry["ended"] = _now()
        atomic_write_json(run_dir / "attempts.json", attempts)
