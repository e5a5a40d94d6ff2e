"""ModelConfig: the typed, checked description of one T5-family model, its named presets, and the
architecture registry.

A config holds plain data only (strings, ints, floats, bools), so it serialises into YAML, Lightning
checkpoints and Optuna trials unchanged. Every impossible combination is rejected in ``__post_init__``
with a one-line ``ConfigError`` naming the field.

``ARCHITECTURES`` maps each ``arch`` name to its ``ArchSpec``: everything that differs between architectures
(model class, feature converter, encoder or not, FLOPs, Hugging Face export). ``t5lit.model.architectures``
registers the paper's three; a plug-in adds its own through the ``t5lit.architectures`` entry point. The
registry fills itself on first lookup, importing those modules by name: this module imports neither torch
nor the model.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from t5lit.registry import ConfigError, Registry, check_choice, discover_entry_points, unknown_name_message

FFN_KINDS = ("relu", "gated-gelu")
ATTENTION_BACKENDS = ("sdpa", "flex", "eager")


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: what every other part of t5lit reads about it (DESIGN.md section 4).

    name: the ``arch`` value of a config. model: the model class, built as ``model(cfg)``; its class
    attribute ``arch`` must equal ``name``. has_encoder: a separate encoder stack (``num_encoder_layers`` >= 1
    and the ``encoder_*`` features) or one stack (``num_encoder_layers`` 0). converter: ``(inputs_length,
    targets_length, *, pack, truncate, loss_on_inputs) -> FeatureConverter`` (``t5lit.features``).
    train_flops: ``(cfg, encoder_length, decoder_length) -> float``, matmul FLOPs of forward + backward for
    one row of model features of those lengths (encoder_length is 0 without an encoder). hf_class: the
    transformers class ``t5lit.model.hf`` exports to, or None with ``no_hf_reason`` (one line) saying why.
    description: one line for ``t5lit list architectures``.
    """

    name: str
    model: type
    has_encoder: bool
    converter: Callable[..., Any]
    train_flops: Callable[[ModelConfig, int, int], float]
    description: str
    hf_class: str | None = None
    no_hf_reason: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"ArchSpec.name must be an identifier-like string, got {self.name!r}")
        if getattr(self.model, "arch", None) != self.name:
            raise ConfigError(f"ArchSpec {self.name!r}: its model class {getattr(self.model, '__name__', self.model)} "
                              f"has arch={getattr(self.model, 'arch', None)!r}; they must be equal")
        if not isinstance(self.has_encoder, bool):
            raise ConfigError(f"ArchSpec {self.name!r}: has_encoder must be a bool, got {self.has_encoder!r}")
        if not callable(self.converter) or not callable(self.train_flops):
            raise ConfigError(f"ArchSpec {self.name!r}: converter and train_flops must be callables")
        if self.hf_class is None and not self.no_hf_reason:
            raise ConfigError(f"ArchSpec {self.name!r}: without hf_class, give no_hf_reason (one line)")
        for text in (self.description, self.no_hf_reason):
            if "\n" in text:
                raise ConfigError(f"ArchSpec {self.name!r}: description and no_hf_reason are one line each")


def _discover_architectures() -> None:
    importlib.import_module("t5lit.model.architectures")  # by name: config never imports the model
    discover_entry_points("t5lit.architectures")


# Insertion order (not sorted): the paper's order, encoder_decoder, decoder_only, prefix_lm, then plug-ins.
ARCHITECTURES: Registry[ArchSpec] = Registry("architecture", discover=_discover_architectures, sort=False)


@dataclass(frozen=True)
class ModelConfig:
    """One model of the T5 family (paper Section 3.1 and 3.2; T5 1.1 for gated-GELU)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64  # per-head width; inner width = num_heads * d_kv (need not equal d_model)
    d_ff: int = 2048
    num_heads: int = 8
    num_encoder_layers: int = 6  # must be 0 for decoder-only architectures
    num_decoder_layers: int = 6
    ffn: str = "relu"  # relu (T5 1.0) | gated-gelu (T5 1.1)
    dropout_rate: float = 0.1
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    tie_word_embeddings: bool = True  # T5 1.0 ties; tied logits are rescaled by d_model**-0.5
    arch: str = "encoder_decoder"  # a key of ARCHITECTURES: encoder_decoder | decoder_only | prefix_lm (Table 2)
    share_encoder_decoder: bool = False  # Table 2 "shared": decoder layers reuse the encoder's weights
    attention: str = "sdpa"  # sdpa | flex (CUDA) | eager (reference)
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0  # scales T5's initialisation (as transformers' T5 does)
    # Inner width d of an adapter after every block's feed-forward network (Section 3.5.1, Table 10); 0: none.
    # Set by a fine-tuning stage with finetune.method: adapters, so checkpoints rebuild the adapters.
    adapter_dim: int = 0

    def __post_init__(self):
        check_choice("arch", self.arch, sorted(ARCHITECTURES.names()))
        check_choice("ffn", self.ffn, FFN_KINDS)
        check_choice("attention", self.attention, ATTENTION_BACKENDS)
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_decoder_layers",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.adapter_dim, int) or isinstance(self.adapter_dim, bool) or self.adapter_dim < 0:
            raise ConfigError(f"ModelConfig.adapter_dim must be an integer >= 0 (0: no adapters), got "
                              f"{self.adapter_dim!r}")
        if not isinstance(self.num_encoder_layers, int) or self.num_encoder_layers < 0:
            raise ConfigError(
                f"ModelConfig.num_encoder_layers must be an integer >= 0, got {self.num_encoder_layers!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(f"ModelConfig.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if self.vocab_size < 103:
            raise ConfigError(
                f"ModelConfig.vocab_size must be >= 103 (pad, EOS, unk and 100 sentinels), got {self.vocab_size}")
        if self.relative_attention_num_buckets < 2:
            raise ConfigError("ModelConfig.relative_attention_num_buckets must be >= 2")
        if self.spec.has_encoder:
            if self.num_encoder_layers < 1:
                one_stack = " or ".join(repr(n) for n in ARCHITECTURES if not ARCHITECTURES.get(n).has_encoder)
                raise ConfigError(
                    f"ModelConfig.num_encoder_layers must be >= 1 for arch={self.arch!r} "
                    f"(got {self.num_encoder_layers}); use arch={one_stack} for no encoder")
            if self.share_encoder_decoder and self.num_encoder_layers != self.num_decoder_layers:
                raise ConfigError(
                    "ModelConfig.share_encoder_decoder needs num_encoder_layers == num_decoder_layers "
                    f"(got {self.num_encoder_layers} and {self.num_decoder_layers})")
        else:
            if self.num_encoder_layers != 0:
                raise ConfigError(
                    f"ModelConfig.num_encoder_layers must be 0 for arch={self.arch!r} "
                    f"(got {self.num_encoder_layers}); its depth is num_decoder_layers")
            if self.share_encoder_decoder:
                raise ConfigError(
                    f"ModelConfig.share_encoder_decoder needs an encoder; arch={self.arch!r} has none")

    @property
    def spec(self) -> ArchSpec:
        """The ArchSpec of ``arch``."""
        return ARCHITECTURES.get(self.arch)

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    def replace(self, **changes) -> ModelConfig:
        """A copy with ``changes`` applied (and checked); unknown field names raise a ConfigError."""
        check_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        check_fields(d)
        return cls(**d)


def check_fields(d: dict) -> None:
    valid = [f.name for f in fields(ModelConfig)]
    for key in d:
        if key not in valid:
            raise ConfigError(unknown_name_message("ModelConfig field", key, valid))


# ---------------------------------------------------------------------------------------------------
# Presets. Numbers from the published model configs (google-research/text-to-text-transfer-transformer
# gin files and the released checkpoints' config.json); vocab 32128 = 32000 pieces + 100 extra ids,
# padded to a multiple of 128 as the released models are.
# ---------------------------------------------------------------------------------------------------

PRESETS: Registry[dict] = Registry("preset")

# Tests only: a few layers, width 32. vocab 1152 = the built-in 1,000-piece vocabulary + 100 extra ids,
# padded to a multiple of 128 as T5 pads 32,100 to 32,128.
PRESETS.add("tiny", dict(vocab_size=1152, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_encoder_layers=2,
                         num_decoder_layers=2, dropout_rate=0.0, relative_attention_num_buckets=8,
                         relative_attention_max_distance=16))
# The quickstart and CPU sweeps ("scale: tiny"): 2+2 blocks of width 64, trains in minutes on 2 cores.
PRESETS.add("mini", dict(vocab_size=1152, d_model=64, d_kv=16, d_ff=256, num_heads=4, num_encoder_layers=2,
                         num_decoder_layers=2, dropout_rate=0.0, relative_attention_num_buckets=16,
                         relative_attention_max_distance=64))
# T5 1.0 small (paper Section 3.7, Table 14): 6+6 blocks, d_model 512, 8 heads, d_ff 2048; 60,506,624 params.
PRESETS.add("t5-small", dict(d_model=512, d_kv=64, d_ff=2048, num_heads=8, num_encoder_layers=6,
                             num_decoder_layers=6))
# T5 1.0 base, the paper's baseline (Section 3.1.1): 12+12 blocks, 768, 12 heads of 64, d_ff 3072; ~220M.
PRESETS.add("t5-base", dict(d_model=768, d_kv=64, d_ff=3072, num_heads=12, num_encoder_layers=12,
                            num_decoder_layers=12))
# T5 1.0 large (Section 3.7): 24+24 blocks, 1024, 16 heads of 64, d_ff 4096; ~738M.
PRESETS.add("t5-large", dict(d_model=1024, d_kv=64, d_ff=4096, num_heads=16, num_encoder_layers=24,
                             num_decoder_layers=24))
# T5 1.1 (google-research/text-to-text-transfer-transformer, released_checkpoints.md): gated-GELU FFN,
# untied embeddings, no dropout in pre-training (0.1 recommended for fine-tuning).
PRESETS.add("t5.1.1-small", dict(d_model=512, d_kv=64, d_ff=1024, num_heads=6, num_encoder_layers=8,
                                 num_decoder_layers=8, ffn="gated-gelu", tie_word_embeddings=False,
                                 dropout_rate=0.0))
PRESETS.add("t5.1.1-base", dict(d_model=768, d_kv=64, d_ff=2048, num_heads=12, num_encoder_layers=12,
                                num_decoder_layers=12, ffn="gated-gelu", tie_word_embeddings=False,
                                dropout_rate=0.0))
PRESETS.add("t5.1.1-large", dict(d_model=1024, d_kv=64, d_ff=2816, num_heads=16, num_encoder_layers=24,
                                 num_decoder_layers=24, ffn="gated-gelu", tie_word_embeddings=False,
                                 dropout_rate=0.0))
# T5 1.1 XL and XXL: the released configs (google/t5-v1_1-xl and google/t5-v1_1-xxl config.json:
# d_model 2048 / 4096, d_ff 5120 / 10240, 32 / 64 heads of 64, 24+24 blocks, gated-gelu, untied);
# 2,849,757,184 and 11,135,332,352 parameters. Dropout as the other T5 1.1 presets (0 in pre-training).
PRESETS.add("t5.1.1-xl", dict(d_model=2048, d_kv=64, d_ff=5120, num_heads=32, num_encoder_layers=24,
                              num_decoder_layers=24, ffn="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0))
PRESETS.add("t5.1.1-xxl", dict(d_model=4096, d_kv=64, d_ff=10240, num_heads=64, num_encoder_layers=24,
                               num_decoder_layers=24, ffn="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0))
# T5 1.0 3B and 11B (paper Section 3.7, Table 14: "3B" uses d_ff 16,384 and 32-headed attention, "11B" d_ff
# 65,536 and 128 heads, both d_kv 128 on d_model 1024 with Large's 24+24 blocks), as in the released configs
# (google-t5/t5-3b and google-t5/t5-11b config.json); 2,851,598,336 and 11,307,321,344 parameters. These four
# do not train on one GPU (fp32 weights, gradients and AdamW states: 16 bytes a parameter, 45 GB for 3B, 180 GB
# for 11B, before activations): shard them with trainer.strategy: fsdp_blocks (t5lit/fsdp.py).
PRESETS.add("t5-3b", dict(d_model=1024, d_kv=128, d_ff=16384, num_heads=32, num_encoder_layers=24,
                          num_decoder_layers=24))
PRESETS.add("t5-11b", dict(d_model=1024, d_kv=128, d_ff=65536, num_heads=128, num_encoder_layers=24,
                           num_decoder_layers=24))


def preset_config(name: str, **overrides) -> ModelConfig:
    """The preset ``name`` with ``overrides`` applied.

    Choosing a decoder-only ``arch`` without giving ``num_encoder_layers`` drops the encoder: the stack
    keeps the preset's decoder depth, as the paper's Table 2 LM rows do (L layers, P parameters).
    """
    check_fields(overrides)
    values = {**PRESETS.get(name), **overrides}
    arch = values.get("arch", ModelConfig.arch)
    if arch in ARCHITECTURES and not ARCHITECTURES.get(arch).has_encoder and "num_encoder_layers" not in overrides:
        values["num_encoder_layers"] = 0
    return ModelConfig(**values)


def preset_parameters(name: str) -> int:
    """The number of unique parameters of the preset ``name``'s encoder-decoder, counted from its numbers (no
    model built, no torch imported: ``t5lit list presets`` answers at once); equal to ``count_parameters`` of
    the built model (tests/test_config.py checks every preset)::

        embedding V*d (+ an untied output layer V*d); per encoder block: attention 4*d*h*dk, FFN (2 or 3)*d*d_ff,
        2 norms d; per decoder block: 2 attentions, the FFN, 3 norms; per stack a relative bias (buckets x heads)
        and a final norm d.
    """
    values = {f.name: f.default for f in fields(ModelConfig)} | PRESETS.get(name)
    d, inner, d_ff = values["d_model"], values["num_heads"] * values["d_kv"], values["d_ff"]
    attention, ffn = 4 * d * inner, (3 if values["ffn"] == "gated-gelu" else 2) * d * d_ff
    bias = values["relative_attention_num_buckets"] * values["num_heads"]
    encoder = values["num_encoder_layers"] * (attention + ffn + 2 * d) + bias + d
    decoder = values["num_decoder_layers"] * (2 * attention + ffn + 3 * d) + bias + d
    embeddings = values["vocab_size"] * d * (1 if values["tie_word_embeddings"] else 2)
    return embeddings + encoder + decoder


__all__ = ["ModelConfig", "PRESETS", "preset_config", "preset_parameters", "ArchSpec", "ARCHITECTURES", "FFN_KINDS",
           "ATTENTION_BACKENDS", "ConfigError"]
