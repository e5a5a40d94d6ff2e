"""Experiment files: YAML 1.2 with an optional ``base:`` to inherit from, a ``scale``, and dotted overrides.

An experiment file is plain data. ``base: paper/baseline.yaml`` (relative to the file) is loaded first and
this file's keys are merged over it (mappings merge key by key; anything else replaces). The layers, bottom
to top: the schema's defaults (t5lit/schema.py), the root of the ``base`` chain, its ``scale``'s settings,
the rest of the chain, then overrides from the command line or a sweep row (dotted paths,
``pretrain.objective_params.noise_density: 0.5``), and last the override ``multiply``, which scales values
that the layers below set: ``multiply: {pretrain.steps: 4, finetune.steps: 4}`` is Table 13's "4x training
steps" at any scale (a ModelConfig field under ``model.overrides`` that nothing set multiplies the preset's;
a sweep row's ``multiply`` replaces the sweep's own).

Every key of every file and every override is checked against the schema as it is read, so a typo fails
in one line naming the file and the closest valid key; values are YAML 1.2 (``1e-4`` is a float, ``on`` is a
string). ``load_experiment`` returns the resolved mapping (a ``dict`` that remembers which file set each
key); ``resolve_experiment`` the typed, checked ``Experiment``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from t5lit.registry import ConfigError, unknown_name_message

# Keys under which a dotted override may create a new entry (free-form parameter maps; their keys are
# checked when the experiment is typed, against the objective, the corpus, ModelConfig or lightning.Trainer).
OPEN_MAPPINGS = ("model.overrides", "pretrain.objective_params", "pretrain.corpus_options", "trainer",
                 "finetune.data_dirs")
FILE_KEYS = ("base", "scale")  # keys of a file that are not part of the resolved experiment


# ------------------------------------------------------------------------------------------ YAML 1.2
class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema for plain scalars: ``1e-4`` and ``.5`` are floats,
    ``0o17`` octal, ``017`` decimal, and only true/false (any case of the first letter) are booleans
    (YAML 1.1's ``yes``/``no``/``on``/``off`` stay strings)."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                                                               "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                    r"|\.(?:nan|NaN|NAN))$")
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader, node):
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def yaml_load(text: str) -> Any:
    """Parse YAML 1.2 (core schema) text; raises yaml.YAMLError."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path, kind: str = "experiment") -> dict:
    """A YAML mapping from a user's file (an experiment or a sweep), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml_load(text) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{kind} {path}: not a UTF-8 text file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)  # at the end of the file it points one line past the last
        where = f"{path}:{min(mark.line + 1, max(1, len(text.splitlines())))}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{kind} {where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} {path}: the file must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_cli_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]", "lr=1e-4"]`` -> ``{"a.b": 3, "c": [1, 2], "lr": 0.0001}`` (values are YAML 1.2)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like path.to.key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML; quote it") from None
    return out


# ------------------------------------------------------------------------------------------ merging
class ResolvedConfig(dict):
    """A resolved experiment mapping; ``sources`` maps dotted keys to the file or override that set them."""

    sources: dict[str, str]

    def __init__(self, data: Mapping, sources: Mapping[str, str] | None = None):
        super().__init__(data)
        self.sources = dict(sources or {})


# A resolved config dumps as the plain mapping it is (``yaml.safe_dump(load_experiment(...))``).
yaml.SafeDumper.add_representer(ResolvedConfig, lambda dumper, data: dumper.represent_dict(dict(data)))


def deep_merge(base: dict, top: Mapping) -> dict:
    """``top`` merged over ``base`` (mappings key by key, everything else replaced); returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _record(sources: dict, data: Any, prefix: str, label: str) -> None:
    """Mark every key of ``data`` (dotted, lists as ``[i]``) as set by ``label`` (the latest setter last)."""
    if prefix:
        sources.pop(prefix, None)
        sources[prefix] = label
    if isinstance(data, Mapping):
        for k, v in data.items():
            _record(sources, v, f"{prefix}.{k}" if prefix else str(k), label)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _record(sources, v, f"{prefix}[{i}]", label)


def _label(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# A scale runs the same study smaller. Its overrides sit just above the root file of the ``base`` chain
# (the paper's baseline): every file built on it, and every command-line or sweep override, still wins.
SCALES: dict[str, dict[str, Any]] = {
    "paper": {},
    # One GPU-day per row: t5-small, 2^16 pre-training steps of 64 x 512, 2^14 fine-tuning steps.
    "small": {"model.preset": "t5-small", "pretrain.steps": 2**16, "pretrain.batch_size": 64,
              "pretrain.checkpoint_every": 2000, "finetune.steps": 2**14, "finetune.batch_size": 64,
              "finetune.eval_every": 2000},
    # Minutes on a CPU: the built-in corpus, vocabulary and tasks, a 2+2-layer model of width 64.
    "tiny": {"model.preset": "mini", "model.vocab": "builtin", "pretrain.corpus": "builtin",
             "pretrain.steps": 500, "pretrain.batch_size": 16, "pretrain.inputs_length": 64,
             "pretrain.warmup_steps": 50, "pretrain.checkpoint_every": 100, "pretrain.val_examples": 64,
             "finetune.tasks": ["builtin_kind", "builtin_summary"], "finetune.steps": 300,
             "finetune.batch_size": 16, "finetune.inputs_length": 96, "finetune.targets_length": 24,
             "finetune.eval_every": 100, "evaluation.max_val_examples": 64, "evaluation.max_decode_length": 24,
             "pretrain.num_workers": 0, "finetune.num_workers": 0, "trainer.precision": "32-true",
             "trainer.accelerator": "cpu"},
}


def _chain(path: Path, seen: tuple = (), schema: bool = True) -> list[tuple[Path, dict]]:
    """The files of the ``base`` chain, root first, each checked against the schema's keys."""
    from t5lit.schema import check_keys

    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{_label(path)}: base must be a path to an experiment file, got {base!r}")
    if schema:
        check_keys(data, _label(path))
    data.setdefault("name", path.stem)
    return ([*_chain(path.parent / base, (*seen, path), schema)] if base is not None else []) + [(path, data)]


def load_experiment(path: str | Path, overrides: Mapping[str, Any] | None = None,
                    source: str = "override", schema: bool = True) -> ResolvedConfig:
    """The resolved experiment mapping: defaults, the root of the ``base`` chain, its ``scale``'s settings, the
    rest of the chain, then ``overrides`` (labelled ``source`` in errors). Every key is checked against the
    schema; types and values are checked by ``resolve_experiment`` (or ``Experiment.from_dict``).

    ``schema=False`` reads a configuration for another runner than t5lit's pipeline (a sweep over a function
    of your own): no defaults layer and no key checks beyond "an override names an existing key"."""
    from t5lit.schema import check_keys, defaults

    chain = _chain(Path(path), schema=schema)
    overrides = dict(overrides or {})
    name = overrides.pop("name", None) or chain[-1][1]["name"]
    scale = overrides.pop("scale", None) or next((d["scale"] for _, d in reversed(chain) if "scale" in d), "paper")
    factors = overrides.pop("multiply", None)
    if scale not in SCALES:
        raise ConfigError(unknown_name_message("scale", scale, sorted(SCALES)))
    sources: dict[str, str] = {}
    root_path, root = chain[0]
    cfg = deep_merge(defaults() if schema else {}, {k: v for k, v in root.items() if k not in FILE_KEYS})
    _record(sources, {k: v for k, v in root.items() if k not in FILE_KEYS}, "", _label(root_path))
    if SCALES[scale]:
        cfg = apply_overrides(cfg, SCALES[scale])
        for key in SCALES[scale]:
            _record(sources, SCALES[scale][key], key, f"scale {scale!r}")
    for p, data in chain[1:]:
        top = {k: v for k, v in data.items() if k not in FILE_KEYS}
        cfg = deep_merge(cfg, top)
        _record(sources, top, "", _label(p))
    cfg["name"] = name
    if scale != "paper":
        cfg["resolved_scale"] = scale
    if schema:
        for dotted, value in overrides.items():
            check_keys(_nest(dotted, value), f"{source} {dotted!r}")
    cfg = apply_overrides(cfg, overrides, source)
    for dotted, value in overrides.items():
        _record(sources, value, dotted, source)
    if factors is not None:
        cfg = multiply_values(cfg, factors, source)
        for dotted in factors:
            _record(sources, None, str(dotted), f"{source} 'multiply'")
    return ResolvedConfig(cfg, sources)


def _nest(dotted: str, value: Any) -> dict:
    out: Any = value
    for key in reversed(str(dotted).split(".")):
        out = {key: out}
    return out


def resolve_experiment(path: str | Path, overrides: Mapping[str, Any] | None = None, source: str = "override"):
    """The typed, checked ``Experiment`` of a file and overrides (one-line errors naming file and key)."""
    from t5lit.schema import Experiment

    cfg = load_experiment(path, overrides, source)
    return Experiment.from_dict(cfg, cfg.sources)


def apply_overrides(cfg: dict, overrides: Mapping[str, Any], source: str = "override") -> dict:
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
                raise ConfigError(f"{source} {dotted!r}: {here!r} is a value, not a section")
            if key not in node and not (last and here in OPEN_MAPPINGS):
                where = f"under {here!r}" if here else "at the top level"
                raise ConfigError(f"{source} {dotted!r}: " + unknown_name_message("key", key, sorted(node), where))
            if last:
                node[key] = copy.deepcopy(value)
            else:
                if node[key] is None and ".".join(keys[: depth + 1]) in OPEN_MAPPINGS:
                    node[key] = {}
                elif node[key] is None:  # a section switched off (pretrain: null) switched back on
                    from t5lit.schema import defaults

                    node[key] = copy.deepcopy(defaults().get(key) or {}) if depth == 0 else {}
                node = node[key]
    return out


def multiply_values(cfg: dict, factors: Mapping[str, Any], source: str = "override") -> dict:
    """A copy of ``cfg`` with the number at each dotted path multiplied by its factor (an integer stays an
    integer, rounded, and a positive one stays >= 1). A ModelConfig field under ``model.overrides`` that
    ``cfg`` does not set is read from the preset. E.g. ``{pretrain.steps: 4, model.overrides.d_model: 1.3333333}``
    on the paper's baseline gives 2^21 steps and d_model 1024. Unknown paths and non-numbers are one line."""
    if not isinstance(factors, Mapping) or not factors:
        raise ConfigError(f"{source} 'multiply' must map dotted keys to factors, e.g. {{pretrain.steps: 4}}; "
                          f"got {factors!r}")
    out = copy.deepcopy(cfg)
    for dotted, factor in factors.items():
        where = f"{source} multiply {dotted!r}"
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
            raise ConfigError(f"{where}: the factor must be a number > 0, got {factor!r}")
        keys = str(dotted).split(".")
        node = out
        for depth, key in enumerate(keys[:-1]):
            node = node.get(key) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {'.'.join(keys[:depth + 1])!r} is not a section of the experiment")
        parent, key = ".".join(keys[:-1]), keys[-1]
        if key in node:
            value = node[key]
        elif parent == "model.overrides":
            value = _preset_value(out["model"], key, where)
        else:
            raise ConfigError(f"{where}: " + unknown_name_message("key", key, sorted(node), f"under {parent!r}"))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: its value {value!r} is not a number")
        new = value * factor
        node[key] = (max(1, round(new)) if value > 0 else round(new)) if isinstance(value, int) else new
    return out


def _preset_value(model: Mapping, key: str, where: str):
    """The value of ModelConfig field ``key`` of the model section's preset (with its arch and overrides)."""
    from dataclasses import fields

    from t5lit.config import ModelConfig, preset_config

    valid = [f.name for f in fields(ModelConfig)]
    if key not in valid:
        raise ConfigError(f"{where}: " + unknown_name_message("ModelConfig field", key, valid))
    try:
        return getattr(preset_config(model["preset"], arch=model["arch"], **(model.get("overrides") or {})), key)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None
