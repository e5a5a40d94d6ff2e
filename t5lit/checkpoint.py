"""Checkpoint files: the one module that reads and writes them.

Two formats:

- a t5lit checkpoint: the Lightning ``.ckpt`` of a ``T5LitModule`` (``trainer.save_checkpoint``), a pickled
  dict whose ``hyper_parameters["model_config"]`` is the ModelConfig as a dict and whose ``state_dict`` holds
  the model's weights under ``model.`` (beside optimizer, loop and data-module state):

      ckpt = read_checkpoint("runs/x/pretrain/final.ckpt")   # ConfigError: missing / corrupt / not t5lit
      cfg, weights = model_config(ckpt), model_weights(ckpt)  # {"embed.weight": (V, d_model), ...}
      load_weights(model, "runs/x/pretrain/final.ckpt")       # ConfigError when the weights do not fit

- a Hugging Face T5 directory (config.json, generation_config.json, model.safetensors) that
  ``transformers.T5ForConditionalGeneration.from_pretrained`` loads: ``save_hf`` / ``load_hf``. The weight
  and config conversions are ``t5lit.model.hf``'s; this module does the file I/O.

``save_trainer_checkpoint`` writes a trainer's checkpoint atomically under DDP. Lightning pickles the
hyper-parameters beside the weights, so reading needs ``weights_only=False``: load only checkpoints you trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t5lit.config import ModelConfig
from t5lit.io import check_can_create, commit
from t5lit.registry import ConfigError

MODEL_PREFIX = "model."  # T5LitModule keeps the model as ``self.model``


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a t5lit Lightning checkpoint, on CPU. A missing, empty, unreadable (truncated, corrupt)
    or foreign file (no ``hyper_parameters["model_config"]`` or no ``state_dict``), a model config that is not
    valid, and weights that do not fit their own model config are each a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a .ckpt file" if path.is_dir() else "not found"
        raise ConfigError(f"checkpoint {what}: {path}")
    if path.stat().st_size == 0:
        raise ConfigError(f"checkpoint {path} is empty (0 bytes); {_VALID}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # say which file and why in one line, not the unpickler's internals
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:200]
        raise ConfigError(f"cannot read checkpoint {path} ({type(err).__name__}: {reason}): it is truncated or "
                          f"not a checkpoint; {_VALID}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, Mapping) or hparams.get("model_config") is None:
        raise ConfigError(f"{path} is not a t5lit checkpoint (no model_config in its hyper_parameters); {_VALID}")
    if not isinstance(ckpt.get("state_dict"), Mapping):
        raise ConfigError(f"{path} is not a t5lit checkpoint (no state_dict); {_VALID}")
    try:
        cfg = ModelConfig.from_dict(model_config(ckpt))
    except (ConfigError, TypeError, ValueError, KeyError, AssertionError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:400]
        raise ConfigError(f"{path}: its model_config is not valid ({reason}); the file was written by another "
                          "program or version") from None
    problems = weight_problems(_shapes_of(cfg), model_weights(ckpt))
    if problems:
        raise ConfigError(f"{path}: its weights do not fit its own model config ({cfg.arch}, d_model "
                          f"{cfg.d_model}): {problems}; the file is damaged or was not written by t5lit")
    return ckpt


_VALID = "expected a .ckpt written by t5lit run or t5lit fit (e.g. runs/<name>/pretrain/final.ckpt)"


def _shapes_of(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the weights of a model of ``cfg`` (built on the meta device: no memory, no time)."""
    from t5lit.model.architectures import build_model

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}


def weight_problems(own: Mapping[str, tuple[int, ...]], weights: Mapping[str, Any]) -> str:
    """What keeps ``weights`` from loading into a model whose weights have the names and shapes ``own``, in
    one line (empty when they fit): missing and unexpected names, and shapes that differ (three of each)."""
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(getattr(weights[k], 'shape', ()))} vs {tuple(v)}" for k, v in own.items()
              if k in weights and (not isinstance(weights[k], torch.Tensor) or tuple(weights[k].shape) != tuple(v))]
    return "; ".join(f"{name} {items[:3]}" + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
                     for name, items in (("missing", missing), ("unexpected", unexpected), ("shapes", shapes))
                     if items)


def model_config(ckpt: Mapping[str, Any]) -> dict:
    """The checkpoint's model config as a dict (``ModelConfig.from_dict`` builds it)."""
    cfg = ckpt["hyper_parameters"]["model_config"]
    return cfg.to_dict() if isinstance(cfg, ModelConfig) else dict(cfg)


def model_weights(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's weights, named as in ``build_model(cfg).state_dict()``: the ``state_dict`` entries under
    ``model.`` with that prefix (and torch.compile's ``_orig_mod.``) removed."""
    return {key[len(MODEL_PREFIX):].removeprefix("_orig_mod."): value
            for key, value in ckpt["state_dict"].items() if key.startswith(MODEL_PREFIX)}


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy the model weights of the t5lit checkpoint ``path`` into ``model`` (e.g. fine-tuning from a
    pre-trained run). Names and shapes must match exactly; else a one-line ConfigError names the differences.

    One difference is accepted: a model with adapters (``adapter_dim``, Table 10) loads a checkpoint without
    any (a pre-trained model): every other weight must match, and the adapters keep their initialisation (the
    identity). A checkpoint with adapters loads only into a model with adapters of the same width."""
    from t5lit.model.architectures import adapter_weight_names

    ckpt = read_checkpoint(path)
    weights = model_weights(ckpt)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs, mine = model_config(ckpt).get("adapter_dim", 0), getattr(getattr(model, "cfg", None), "adapter_dim", 0)
    if theirs and theirs != mine:
        raise ConfigError(f"{path} holds adapter layers of width {theirs} (fine-tuned with finetune.method: "
                          f"adapters); start from it with method adapters and adapter_dim {theirs}, not "
                          + (f"adapter_dim {mine}" if mine else "without adapters"))
    fresh = set(adapter_weight_names(model)) if mine and not theirs else set()  # kept at their initialisation
    problems = weight_problems({k: v for k, v in own.items() if k not in fresh}, weights)
    if problems:
        raise ConfigError(f"the weights of {path} do not fit this model: {problems} "
                          "(the checkpoint's model config differs: check preset/arch/model overrides)")
    model.load_state_dict(weights, strict=not fresh)  # every name but the fresh adapters' was checked above


def save_trainer_checkpoint(trainer, path: str | os.PathLike) -> Path:
    """Save ``trainer``'s checkpoint (model, optimizer, loops, data module) to ``path`` atomically.

    Every rank must call this (saving is a collective; Lightning's global rank 0 writes the file); rank 0 then
    moves ``<path>.tmp`` over ``path``. Ranks that read ``path`` next must first meet rank 0 at a barrier."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")  # the same name on every rank
    trainer.save_checkpoint(tmp)
    if trainer.is_global_zero:
        commit(tmp, path)
    return path


def save_hf(weights: Mapping[str, torch.Tensor], config: ModelConfig | Mapping[str, Any],
            out_dir: str | os.PathLike, files: Mapping[str, bytes] | None = None) -> Path:
    """Write t5lit model weights (``model.state_dict()`` or ``model_weights(ckpt)``) as a Hugging Face T5
    directory that ``T5ForConditionalGeneration.from_pretrained(out_dir)`` loads (config.json,
    generation_config.json, model.safetensors), with ``files`` (name -> bytes: the tokenizer's files and the
    model card, t5lit/export.py) beside them. Encoder-decoder only (else a ConfigError). Returns the
    directory."""
    from t5lit.model.hf import hf_model_from_state_dict

    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    out = Path(out_dir).expanduser()
    check_output_dir(out, "Hugging Face output")
    hf = hf_model_from_state_dict(weights, cfg)
    # Written into a temporary folder beside ``out``, then moved there: an error leaves no half-written model.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp makes it private; the model folder gets a folder's usual mode
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {err.strerror or err}") from None
    try:
        hf.save_pretrained(stage)
        for name, data in (files or {}).items():
            (stage / name).write_bytes(data)
        if out.exists():
            for item in stage.iterdir():
                os.replace(item, out / item.name)
            stage.rmdir()
        else:
            os.replace(stage, out)
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {err.strerror or err}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out


def check_output_dir(path: Path, what: str) -> None:
    """A one-line ConfigError unless ``path`` is a directory or can be made as one (its nearest existing
    parent is a writable directory)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory; give a directory to write")
    check_can_create(path, f"{what} {path}")


def export_hf(model: nn.Module, cfg: ModelConfig, out_dir: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face T5 directory (``save_hf`` of its weights)."""
    return save_hf(model.state_dict(), cfg, out_dir)


def export_lightning_checkpoint(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A t5lit ``.ckpt`` -> a Hugging Face T5 directory for ``from_pretrained``. Returns the directory."""
    ckpt = read_checkpoint(ckpt_path)
    return save_hf(model_weights(ckpt), model_config(ckpt), out_dir)


def load_hf(path_or_name: str | os.PathLike, **overrides) -> tuple[nn.Module, ModelConfig]:
    """(t5lit model in eval mode, its ModelConfig) from a Hugging Face T5 directory or hub name (e.g.
    ``"google-t5/t5-small"``; needs network). Weights load as float32. ``overrides`` set ModelConfig fields
    that HF does not describe (e.g. ``attention="eager"``)."""
    from transformers import T5ForConditionalGeneration

    from t5lit.model.hf import from_hf_model

    name = os.fspath(path_or_name)
    try:
        hf = T5ForConditionalGeneration.from_pretrained(name)
    except (OSError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(f"cannot load a transformers T5 from {name!r}: not a local model directory and not "
                          f"reachable on the hub ({reason})") from None
    return from_hf_model(hf, **overrides)


def import_hf(path_or_model, **overrides) -> tuple[nn.Module, ModelConfig]:
    """(t5lit model in eval mode, its ModelConfig) from an in-memory ``T5ForConditionalGeneration``, a local
    Hugging Face directory or a hub name."""
    from transformers import T5ForConditionalGeneration

    from t5lit.model.hf import from_hf_model

    if isinstance(path_or_model, T5ForConditionalGeneration):
        return from_hf_model(path_or_model, **overrides)
    if isinstance(path_or_model, (str, os.PathLike)):
        return load_hf(path_or_model, **overrides)
    raise ConfigError(f"import_hf takes a T5ForConditionalGeneration, a directory or a hub name; "
                      f"got {type(path_or_model).__name__}")


# ------------------------------------------------------------------------------------------ model.init_from
# The ModelConfig fields a Hugging Face T5 config decides (shapes and functions of the weights); the rest (dropout,
# attention backend, ...) stay the experiment's own.
HF_INIT_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_encoder_layers", "num_decoder_layers",
                  "ffn", "relative_attention_num_buckets", "relative_attention_max_distance", "tie_word_embeddings")


def _hf_reason(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def hf_init_config(path_or_name: str) -> ModelConfig:
    """The ModelConfig of a Hugging Face T5 (a local directory, or a hub name: its config.json only, no
    weights); one line when it cannot be read: not a directory and the hub unreachable (offline), or no T5."""
    from transformers import AutoConfig

    from t5lit.model.hf import config_from_hf

    name = os.fspath(path_or_name)
    local = Path(os.path.expanduser(name))
    if local.exists() and not (local / "config.json").is_file():
        raise ConfigError(f"model.init_from {name}: not a Hugging Face model directory (no config.json); give one "
                          "written by transformers' save_pretrained or `t5lit export-hf`")
    try:
        hf_cfg = AutoConfig.from_pretrained(str(local) if local.exists() else name)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.init_from {name!r}: not a local directory, and the Hugging Face hub cannot be "
                          f"reached for it ({_hf_reason(err)}); offline, give a directory written by transformers' "
                          "save_pretrained or `t5lit export-hf`") from None
    try:
        return config_from_hf(hf_cfg)
    except ConfigError as err:
        raise ConfigError(f"model.init_from {name}: {err}") from None


def check_hf_init(path_or_name: str, cfg: ModelConfig, preset: str | None = None) -> ModelConfig:
    """The HF model's config, when its weights fit a model of ``cfg``; else one line naming the fields that
    differ and, when one matches, the preset to use."""
    from t5lit.config import PRESETS, preset_config

    theirs = hf_init_config(path_or_name)
    diff = [f"{f} {getattr(theirs, f)} (the model's: {getattr(cfg, f)})" for f in HF_INIT_FIELDS
            if getattr(theirs, f) != getattr(cfg, f)]
    if cfg.arch != "encoder_decoder" or cfg.share_encoder_decoder or cfg.adapter_dim:
        diff.append("an unshared encoder_decoder without adapters")
    if diff:
        same = [p for p in PRESETS.names() if all(getattr(preset_config(p), f) == getattr(theirs, f)
                                                  for f in HF_INIT_FIELDS)]
        hint = f"set model.preset: {same[0]}" if same else "set model.overrides to its values"
        raise ConfigError(f"model.init_from {path_or_name}: its config does not fit the model"
                          f"{f' (preset {preset})' if preset else ''}: {'; '.join(diff[:4])}; {hint}")
    return theirs


def load_hf_init(model: nn.Module, path_or_name: str, cfg: ModelConfig) -> None:
    """Copy the weights of a Hugging Face T5 (directory or hub name) into ``model``, a t5lit model of ``cfg``
    (``check_hf_init`` first); the weights are converted with ``t5lit.model.hf.state_dict_from_hf``."""
    from transformers import T5ForConditionalGeneration

    from t5lit.model.hf import state_dict_from_hf

    check_hf_init(path_or_name, cfg)
    name = os.fspath(path_or_name)
    local = Path(os.path.expanduser(name))
    try:
        hf = T5ForConditionalGeneration.from_pretrained(str(local) if local.exists() else name)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.init_from {name!r}: cannot load its weights ({_hf_reason(err)})") from None
    sd = {k: v.detach().float() for k, v in state_dict_from_hf(hf.state_dict(), cfg).items()}
    problems = weight_problems({k: tuple(v.shape) for k, v in model.state_dict().items()}, sd)
    if problems:
        raise ConfigError(f"model.init_from {name}: its weights do not fit the model: {problems}")
    model.load_state_dict(sd, strict=True)
