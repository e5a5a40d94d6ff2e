"""Weight conversion between t5lit's encoder-decoder and transformers' ``T5ForConditionalGeneration``.

Both sides are the same network (paper Section 3.1.1: pre-norm RMS layer norm, relative position bias
computed once per stack, no biases); only parameter names differ. Per stack and block ``i``:

    t5lit                                    transformers (T5)
    embed.weight                             shared.weight (= encoder/decoder.embed_tokens.weight)
    lm_head.weight (untied only)             lm_head.weight (= shared.weight when tied)
    <s>.rel_bias.embedding.weight            <s>.block.0.layer.0.SelfAttention.relative_attention_bias.weight
    <s>.layers.i.self_attn_norm.weight       <s>.block.i.layer.0.layer_norm.weight
    <s>.layers.i.self_attn.{q,k,v,o}.weight  <s>.block.i.layer.0.SelfAttention.{q,k,v,o}.weight
    decoder.layers.i.cross_attn_norm.weight  decoder.block.i.layer.1.layer_norm.weight
    decoder.layers.i.cross_attn.{q,..}.weight decoder.block.i.layer.1.EncDecAttention.{q,k,v,o}.weight
    <s>.layers.i.ffn_norm.weight             <s>.block.i.layer.F.layer_norm.weight      (F = 1 enc, 2 dec)
    <s>.layers.i.ffn.{wi | wi_0,wi_1, wo}    <s>.block.i.layer.F.DenseReluDense.{...}.weight
    <s>.final_norm.weight                    <s>.final_layer_norm.weight

T5 1.0 ties the output layer to the embedding and rescales the decoder output by d_model**-0.5 before it
(Mesh TensorFlow's convention); T5 1.1 unties and does not rescale. transformers 5 keeps the rescaling in
``config.scale_decoder_outputs`` (set from ``tie_word_embeddings`` at construction) and always builds the
head tied, untying it on load when the checkpoint holds a different ``lm_head.weight``; that load prints a
warning ("... we will NOT tie them") which is expected for T5 1.1 layouts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from t5lit.config import ARCHITECTURES, ModelConfig
from t5lit.registry import ConfigError

# transformers is imported lazily: importing t5lit.model must stay cheap and work without it.

_ATTN = ("q", "k", "v", "o")
_FFN = {"relu": ("wi", "wo"), "gated-gelu": ("wi_0", "wi_1", "wo")}
# Old checkpoints carry a relative bias in the first cross-attention that T5 never uses.
_IGNORED_HF_KEYS = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------

def _check_convertible(cfg: ModelConfig) -> None:
    """A ConfigError unless ``cfg``'s architecture exports to transformers' T5 (its ArchSpec says so) and it has
    no adapters."""
    spec = cfg.spec
    if cfg.adapter_dim:
        raise ConfigError(f"a model with adapter layers (adapter_dim {cfg.adapter_dim}, Table 10) has no transformers "
                          "T5 equivalent; export the pre-trained or fully fine-tuned model instead")
    if spec.hf_class != "T5ForConditionalGeneration":
        exportable = [n for n in ARCHITECTURES if ARCHITECTURES.get(n).hf_class == "T5ForConditionalGeneration"]
        why = spec.no_hf_reason or f"its transformers class is {spec.hf_class}, not T5ForConditionalGeneration"
        raise ConfigError(f"arch={cfg.arch!r} has no transformers T5ForConditionalGeneration equivalent ({why}); "
                          f"only arch={' or '.join(map(repr, exportable))} converts to and from Hugging Face T5")


def config_to_hf(cfg: ModelConfig):
    """The ``transformers.T5Config`` of ``cfg`` (T5 1.0: relu, tied; T5 1.1: gated-gelu, untied).

    A shared encoder/decoder maps to an ordinary (unshared) T5 whose two stacks hold copies of the same
    weights. An architecture whose ArchSpec has no T5 export (decoder_only, prefix_lm) raises a ConfigError.
    """
    from transformers import T5Config

    _check_convertible(cfg)
    return T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_heads=cfg.num_heads,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_epsilon,
        initializer_factor=cfg.initializer_factor, feed_forward_proj=cfg.ffn,
        # T5Config turns this into scale_decoder_outputs (the d_model**-0.5 rescaling of tied models).
        tie_word_embeddings=cfg.tie_word_embeddings,
        is_encoder_decoder=True, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        architectures=["T5ForConditionalGeneration"],
    )


def _hf_is_tied(hf_cfg) -> bool:
    """Whether an HF T5 config describes a T5 1.0-style tied, rescaled output layer."""
    # transformers >= 5 forces tie_word_embeddings=True and records the real choice here.
    scale = getattr(hf_cfg, "scale_decoder_outputs", None)
    return bool(hf_cfg.tie_word_embeddings if scale is None else scale)


def config_from_hf(hf_cfg, **overrides) -> ModelConfig:
    """The ModelConfig of an HF ``T5Config`` (always arch='encoder_decoder', unshared).

    ``overrides`` replace fields that HF does not describe, e.g. ``attention="eager"``.
    """
    model_type = getattr(hf_cfg, "model_type", None)
    if model_type != "t5":
        raise ConfigError(f"expected a transformers T5 config (model_type 't5'), got model_type {model_type!r}")
    if hf_cfg.feed_forward_proj not in _FFN:
        raise ConfigError(f"T5 feed_forward_proj {hf_cfg.feed_forward_proj!r} is not supported; "
                          f"valid: {', '.join(_FFN)}")
    values = dict(
        vocab_size=hf_cfg.vocab_size, d_model=hf_cfg.d_model, d_kv=hf_cfg.d_kv, d_ff=hf_cfg.d_ff,
        num_heads=hf_cfg.num_heads, num_encoder_layers=hf_cfg.num_layers,
        num_decoder_layers=hf_cfg.num_decoder_layers if hf_cfg.num_decoder_layers is not None else hf_cfg.num_layers,
        ffn=hf_cfg.feed_forward_proj, dropout_rate=float(hf_cfg.dropout_rate),
        relative_attention_num_buckets=hf_cfg.relative_attention_num_buckets,
        relative_attention_max_distance=hf_cfg.relative_attention_max_distance,
        tie_word_embeddings=_hf_is_tied(hf_cfg), arch="encoder_decoder", share_encoder_decoder=False,
        layer_norm_epsilon=float(hf_cfg.layer_norm_epsilon), initializer_factor=float(hf_cfg.initializer_factor),
    )
    return ModelConfig.from_dict({**values, **overrides})


# ------------------------------------------------------------------------------------------------
# State dicts
# ------------------------------------------------------------------------------------------------

def _name_pairs(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(t5lit name, HF name) for every per-stack weight; embeddings and head are handled separately."""
    pairs = []
    for stack, depth in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
        pairs.append((f"{stack}.rel_bias.embedding.weight",
                      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        pairs.append((f"{stack}.final_norm.weight", f"{stack}.final_layer_norm.weight"))
        ffn_idx = 2 if stack == "decoder" else 1  # decoder blocks have cross-attention as layer.1
        for i in range(depth):
            ours, theirs = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            pairs.append((f"{ours}.self_attn_norm.weight", f"{theirs}.0.layer_norm.weight"))
            pairs += [(f"{ours}.self_attn.{p}.weight", f"{theirs}.0.SelfAttention.{p}.weight") for p in _ATTN]
            if stack == "decoder":
                pairs.append((f"{ours}.cross_attn_norm.weight", f"{theirs}.1.layer_norm.weight"))
                pairs += [(f"{ours}.cross_attn.{p}.weight", f"{theirs}.1.EncDecAttention.{p}.weight")
                          for p in _ATTN]
            pairs.append((f"{ours}.ffn_norm.weight", f"{theirs}.{ffn_idx}.layer_norm.weight"))
            pairs += [(f"{ours}.ffn.{w}.weight", f"{theirs}.{ffn_idx}.DenseReluDense.{w}.weight")
                      for w in _FFN[cfg.ffn]]
    return pairs


def _lookup(sd: Mapping[str, torch.Tensor], name: str, cfg: ModelConfig) -> torch.Tensor:
    if name in sd:
        return sd[name]
    # A shared encoder/decoder (paper Table 2, "shared") may list a reused decoder weight only under the
    # encoder's name; HF gets its own copy in the decoder stack.
    if cfg.share_encoder_decoder and name.startswith("decoder."):
        enc_name = "encoder." + name[len("decoder."):]
        if enc_name in sd:
            return sd[enc_name]
    raise ConfigError(f"t5lit state dict has no {name!r}; it does not match the config "
                      f"(arch={cfg.arch!r}, ffn={cfg.ffn!r}, layers {cfg.num_encoder_layers}+{cfg.num_decoder_layers})")


def state_dict_to_hf(sd: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """t5lit weights -> the keys of ``T5ForConditionalGeneration.state_dict()`` (no copies are made).

    The embedding appears under shared/encoder.embed_tokens/decoder.embed_tokens (one tensor), and so does
    lm_head.weight when tied, exactly as HF's own state_dict() lists them; extra keys in ``sd`` are ignored.
    """
    _check_convertible(cfg)
    embed = _lookup(sd, "embed.weight", cfg)  # (V, d_model)
    out = {theirs: _lookup(sd, ours, cfg) for ours, theirs in _name_pairs(cfg)}
    out["shared.weight"] = out["encoder.embed_tokens.weight"] = out["decoder.embed_tokens.weight"] = embed
    out["lm_head.weight"] = embed if cfg.tie_word_embeddings else _lookup(sd, "lm_head.weight", cfg)
    return out


def state_dict_from_hf(sd: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF T5 weights -> t5lit names for ``build_model(cfg).load_state_dict(..., strict=True)``.

    Raises a ConfigError on a missing weight, on an unknown key, and on a tied ``cfg`` whose checkpoint holds
    an lm_head different from the embedding (not expressible as a tied t5lit model).
    """
    _check_convertible(cfg)
    if cfg.share_encoder_decoder:
        raise ConfigError("share_encoder_decoder=True cannot be imported from transformers T5 (its stacks are "
                          "unshared); use share_encoder_decoder=False")
    remaining = dict(sd)

    def take(name: str) -> torch.Tensor:
        if name not in remaining:
            raise ConfigError(f"HF T5 state dict has no {name!r}; it does not match the config (ffn={cfg.ffn!r}, "
                              f"layers {cfg.num_encoder_layers}+{cfg.num_decoder_layers})")
        return remaining.pop(name)

    out = {ours: take(theirs) for ours, theirs in _name_pairs(cfg)}
    embed = remaining.pop("shared.weight", None)
    if embed is None:  # some checkpoints keep only a stack's copy of the tied embedding
        embed = take("encoder.embed_tokens.weight")
    out["embed.weight"] = embed
    remaining.pop("encoder.embed_tokens.weight", None)
    remaining.pop("decoder.embed_tokens.weight", None)
    for key in _IGNORED_HF_KEYS:
        remaining.pop(key, None)
    head = remaining.pop("lm_head.weight", None)
    if cfg.tie_word_embeddings:
        if head is not None and not torch.equal(head, embed):
            raise ConfigError("HF T5 config ties the output layer but lm_head.weight differs from shared.weight; "
                              "load it with tie_word_embeddings=False")
    elif head is None:
        raise ConfigError("HF T5 state dict has no 'lm_head.weight' but the config is untied (T5 1.1)")
    else:
        out["lm_head.weight"] = head
    if remaining:
        names = sorted(remaining)
        raise ConfigError(f"HF T5 state dict has {len(names)} unexpected key(s), e.g. {names[:3]}")
    return out


# ------------------------------------------------------------------------------------------------
# Models and directories
# ------------------------------------------------------------------------------------------------

def hf_model_from_state_dict(sd: Mapping[str, torch.Tensor], cfg: ModelConfig):
    """An in-memory ``T5ForConditionalGeneration`` (eval mode) holding a copy of the t5lit weights ``sd``."""
    from transformers import T5ForConditionalGeneration

    hf_cfg = config_to_hf(cfg)
    hf_sd = state_dict_to_hf(sd, cfg)
    copies: dict[int, torch.Tensor] = {}  # one copy per source tensor, so tied weights stay one tensor
    hf_sd = {k: copies.setdefault(id(v), v.detach().clone()) for k, v in hf_sd.items()}
    with torch.device("meta"):  # skip HF's random initialisation: every weight is assigned below
        hf = T5ForConditionalGeneration(hf_cfg)
    hf.load_state_dict(hf_sd, strict=True, assign=True)
    # assign=True gives every module its own Parameter: restore HF's ties (one embedding; the head if tied).
    hf.set_input_embeddings(hf.shared)
    if cfg.tie_word_embeddings:
        hf.lm_head.weight = hf.shared.weight
    return hf.eval()


def to_hf_model(model: nn.Module, cfg: ModelConfig):
    """An in-memory ``T5ForConditionalGeneration`` (eval mode) holding a copy of ``model``'s weights."""
    return hf_model_from_state_dict(model.state_dict(), cfg)


def from_hf_model(hf, **overrides) -> tuple[nn.Module, ModelConfig]:
    """(t5lit model in eval mode, its ModelConfig) holding the weights of an in-memory
    ``T5ForConditionalGeneration`` as float32. ``overrides`` go to :func:`config_from_hf` (fields HF does not
    describe, e.g. ``attention="eager"``). Files: ``t5lit.checkpoint.import_hf`` / ``export_hf``."""
    from t5lit.model.architectures import build_model

    cfg = config_from_hf(hf.config, **overrides)
    model = build_model(cfg)
    sd = {k: v.detach().float() for k, v in state_dict_from_hf(hf.state_dict(), cfg).items()}
    model.load_state_dict(sd, strict=True)
    return model.eval(), cfg


__all__ = ["config_to_hf", "config_from_hf", "state_dict_to_hf", "state_dict_from_hf", "hf_model_from_state_dict",
           "to_hf_model", "from_hf_model"]
