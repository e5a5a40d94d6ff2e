"""Experiment files: YAML with an optional ``base:`` to inherit from, and dotted overrides.

An experiment file is plain data. ``base: paper/baseline.yaml`` (relative to the file) is loaded first and
this file's keys are merged over it (mappings merge key by key; anything else replaces). Overrides from
the command line or a sweep row use dotted paths (``pretrain.objective_params.noise_density: 0.5``) and
may only name keys that exist in the resolved config, so a typo fails before any work starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from t5lit.registry import ConfigError, unknown_name_message

# Keys under which a dotted override may create a new entry (free-form parameter maps).
OPEN_MAPPINGS = ("model.overrides", "pretrain.objective_params", "pretrain.corpus_options", "trainer",
                 "finetune.data_dirs")


def deep_merge(base: dict, top: Mapping) -> dict:
    """``top`` merged over ``base`` (mappings key by key, everything else replaced); returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path, kind: str = "experiment") -> dict:
    """A YAML mapping from a user's file (an experiment or a sweep), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{kind} {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} {path}: a {kind} file must be a mapping, got {type(data).__name__}")
    return data


# A scale runs the same study smaller. Its overrides sit just above the root file of the ``base`` chain
# (the paper's baseline): every file built on it, and every command-line or sweep override, still wins.
SCALES: dict[str, dict[str, Any]] = {
    "paper": {},
    # One GPU-day per row: t5-small, 2^16 pre-training steps of 64 x 512, 2^14 fine-tuning steps.
    "small": {"model.preset": "t5-small", "pretrain.steps": 2**16, "pretrain.batch_size": 64,
              "pretrain.checkpoint_every": 2000, "finetune.steps": 2**14, "finetune.batch_size": 64,
              "finetune.eval_every": 2000},
    # Minutes on a CPU: the built-in corpus, vocabulary and tasks, a 2+2-layer model of width 64.
    "tiny": {"model.preset": "mini", "pretrain.corpus": "builtin", "pretrain.vocab": "builtin",
             "pretrain.steps": 500, "pretrain.batch_size": 16, "pretrain.inputs_length": 64,
             "pretrain.warmup_steps": 50, "pretrain.checkpoint_every": 100, "pretrain.val_examples": 64,
             "finetune.tasks": ["builtin_kind", "builtin_summary"], "finetune.vocab": "builtin", "finetune.steps": 300,
             "finetune.batch_size": 16, "finetune.inputs_length": 96, "finetune.targets_length": 24,
             "finetune.eval_every": 100, "finetune.max_val_examples": 64, "finetune.max_decode_length": 24,
             "pretrain.num_workers": 0, "finetune.num_workers": 0, "trainer.precision": "32-true",
             "trainer.accelerator": "cpu"},
}


def _chain(path: Path, seen: tuple = ()) -> list[dict]:
    """The files of the ``base`` chain, root first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = read_yaml(path)
    base = data.pop("base", None)
    data.setdefault("name", path.stem)
    return ([*_chain(path.parent / base, (*seen, path))] if base is not None else []) + [data]


def load_experiment(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The resolved experiment: the root of the ``base`` chain, its ``scale``'s settings, the rest of the
    chain merged over them, then ``overrides`` (dotted paths). The result records the scale it applied as
    ``resolved_scale`` (and no ``scale``), so loading a resolved config again changes nothing."""
    overrides = dict(overrides or {})
    chain = _chain(Path(path))
    name = chain[-1]["name"]
    scale = overrides.pop("scale", None) or next((d["scale"] for d in reversed(chain) if "scale" in d), "paper")
    if scale not in SCALES:
        raise ConfigError(unknown_name_message("scale", scale, sorted(SCALES)))
    cfg = {k: v for k, v in chain[0].items() if k != "scale"}
    cfg = apply_overrides(cfg, SCALES[scale])
    for data in chain[1:]:
        cfg = deep_merge(cfg, {k: v for k, v in data.items() if k != "scale"})
    cfg["name"] = name
    cfg["resolved_scale"] = cfg.get("resolved_scale", scale) if scale == "paper" else scale
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: dict, overrides: Mapping[str, Any]) -> dict:
    """A copy of ``cfg`` with each dotted ``path: value`` set. The path must exist, except one level
    below the free-form maps of ``OPEN_MAPPINGS``. Unknown paths raise a one-line ConfigError."""
    out = copy.deepcopy(cfg)
    for dotted, value in overrides.items():
        keys = str(dotted).split(".")
        node = out
        for depth, key in enumerate(keys):
            here = ".".join(keys[:depth])
            last = depth == len(keys) - 1
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {here!r} is a value, not a section")
            if key not in node and not (last and here in OPEN_MAPPINGS):
                where = f"under {here!r}" if here else "at the top level"
                raise ConfigError(f"override {dotted!r}: " + unknown_name_message(f"key {where}", key, sorted(node)))
            if last:
                node[key] = copy.deepcopy(value)
            else:
                if node[key] is None and ".".join(keys[: depth + 1]) in OPEN_MAPPINGS:
                    node[key] = {}
                node = node[key]
    return out


def parse_cli_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]"]`` -> ``{"a.b": 3, "c": [1, 2]}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like path.to.key=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out
