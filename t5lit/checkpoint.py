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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t5lit.config import ModelConfig
from t5lit.io import commit
from t5lit.registry import ConfigError

MODEL_PREFIX = "model."  # T5LitModule keeps the model as ``self.model``


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a t5lit Lightning checkpoint, on CPU. A missing, unreadable (truncated, corrupt) or
    foreign file (no ``hyper_parameters["model_config"]`` or no ``state_dict``) is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a .ckpt file" if path.is_dir() else "not found"
        raise ConfigError(f"checkpoint {what}: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # say which file and why in one line, not the unpickler's internals
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:200]
        raise ConfigError(f"cannot read checkpoint {path} (truncated or not a checkpoint?): "
                          f"{type(err).__name__}: {reason}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, Mapping) or hparams.get("model_config") is None:
        raise ConfigError(f"{path} is not a t5lit checkpoint (no model_config in its hyper_parameters)")
    if not isinstance(ckpt.get("state_dict"), Mapping):
        raise ConfigError(f"{path} is not a t5lit checkpoint (no state_dict)")
    return ckpt


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
    pre-trained run). Names and shapes must match exactly; else a one-line ConfigError names the differences."""
    weights = model_weights(read_checkpoint(path))
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or shapes:
        problems = [f"{name} {items[:3]}" + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
                    for name, items in (("missing", missing), ("unexpected", unexpected), ("shapes", shapes))
                    if items]
        raise ConfigError(f"the weights of {path} do not fit this model: {'; '.join(problems)} "
                          "(the checkpoint's model config differs: check preset/arch/model overrides)")
    model.load_state_dict(weights, strict=True)


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
            out_dir: str | os.PathLike) -> Path:
    """Write t5lit model weights (``model.state_dict()`` or ``model_weights(ckpt)``) as a Hugging Face T5
    directory that ``T5ForConditionalGeneration.from_pretrained(out_dir)`` loads (config.json,
    generation_config.json, model.safetensors). Encoder-decoder only (else a ConfigError). Returns the
    directory."""
    from t5lit.model.hf import hf_model_from_state_dict

    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))
    hf = hf_model_from_state_dict(weights, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    return out


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
