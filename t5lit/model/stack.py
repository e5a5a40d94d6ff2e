"""The one transformer stack of every architecture (paper Section 3.1.1, 3.2.1, Table 2).

A stack is pre-norm blocks (self-attention, optional cross-attention, FFN with an optional adapter after
it), each sub-layer ``x + dropout(sublayer(norm(x)))``, then a final RMS norm and dropout. It owns the
relative position bias table: the bias is computed once per pass and shared by all its layers (T5). Flags
fix its kind:

    encoder                causal=False, cross_attention=False, bidirectional buckets
    enc-dec decoder        causal=True,  cross_attention=True,  unidirectional buckets
    decoder-only LM        causal=True,  cross_attention=False, unidirectional buckets
    prefix LM              causal=True,  prefix visible,        bidirectional buckets

Incremental decoding: ``forward(..., cache=StackCache)`` appends the new keys/values of every layer to the
cache and attends over everything cached so far; cross-attention keys/values are projected once.

``stack_flops`` counts a stack's matrix multiplications, from which each architecture's FLOPs (its
``ArchSpec.train_flops``, for throughput and MFU) are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from t5lit.config import ModelConfig
from t5lit.model.layers import (
    Adapter,
    Attention,
    AttentionMask,
    FeedForward,
    FlexMaskSpec,
    RelativePositionBias,
    RMSNorm,
    additive_mask,
    check_flex_device,
    flex_block_mask,
)


@dataclass
class SeqInfo:
    """Per-token attention metadata of one sequence batch.

    segment_ids (B, T) long: attention only within a segment (all ones when unpacked, 0 = packing padding);
    positions (B|1, T) long: positions for the relative bias (restart at 0 in each packed segment); plain:
    positions are 0..T-1 in every row, so the bias is one Toeplitz matrix (``RelativePositionBias.plain``);
    key_ok (B, T) bool: False for padding keys (unpacked encoder: token 0); prefix (B, T) bool or None:
    prefix LM's fully visible part (decoder_causal_attention == 1).
    """

    segment_ids: Tensor
    positions: Tensor
    key_ok: Tensor
    prefix: Tensor | None = None
    plain: bool = False  # positions are 0..T-1 in every row (known from the features, without a look at values)

    def cat(self, new: SeqInfo) -> SeqInfo:
        """This (past) metadata followed by ``new`` along time."""
        B = self.segment_ids.shape[0]
        prefix = None
        if self.prefix is not None:
            prefix = torch.cat([self.prefix, new.prefix], 1)
        return SeqInfo(torch.cat([self.segment_ids, new.segment_ids], 1),
                       torch.cat([self.positions.expand(B, -1), new.positions.expand(B, -1)], 1),
                       torch.cat([self.key_ok, new.key_ok], 1), prefix)

    def select(self, index: Tensor) -> SeqInfo:
        """Rows ``index`` (beam search reorders and repeats rows)."""
        B = self.segment_ids.shape[0]
        return SeqInfo(self.segment_ids[index], self.positions.expand(B, -1)[index], self.key_ok[index],
                       None if self.prefix is None else self.prefix[index])


def self_attention_allowed(q: SeqInfo, k: SeqInfo, q_start: int, causal: bool) -> Tensor:
    """(B, 1, Tq, Tk) bool: may query i (absolute index q_start + i) attend key j?

    allowed(i, j) = key_ok[j] and seg[i] == seg[j] and (not causal or j <= i or (prefix[i] and prefix[j])).
    E.g. prefix LM, prefix flags [1, 1, 0], one segment -> rows [[1, 1, 0], [1, 1, 0], [1, 1, 1]].
    """
    Tq, Tk = q.segment_ids.shape[1], k.segment_ids.shape[1]
    allowed = k.key_ok[:, None, :] & (q.segment_ids[:, :, None] == k.segment_ids[:, None, :])  # (B, Tq, Tk)
    if causal:
        device = q.segment_ids.device
        visible = (torch.arange(Tk, device=device)[None, :]
                   <= torch.arange(q_start, q_start + Tq, device=device)[:, None])[None]  # (1, Tq, Tk)
        if q.prefix is not None:
            visible = visible | (q.prefix[:, :, None] & k.prefix[:, None, :])
        allowed = allowed & visible
    return allowed[:, None]


def cross_attention_allowed(q: SeqInfo, memory: SeqInfo) -> Tensor:
    """(B, 1, Tq, Tenc) bool: decoder segment s sees only encoder segment s, never padding keys."""
    return (memory.key_ok[:, None, :] & (q.segment_ids[:, :, None] == memory.segment_ids[:, None, :]))[:, None]


def mask_dtype(x: Tensor) -> torch.dtype:
    """dtype of the additive attention mask: fp32 on CPU (its flash kernel takes it beside bf16 queries, and
    the bias keeps its precision), else the dtype attention computes in (autocast's, or ``x``'s)."""
    device = x.device.type
    if device == "cpu":
        return torch.float32
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


@dataclass
class StackCache:
    """Keys/values of every past position, per layer, plus what is needed to mask and bias new queries."""

    past: SeqInfo | None = None  # metadata of the cached positions
    self_kv: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # per layer: (B, H, Tpast, dk) x 2
    memory: SeqInfo | None = None  # encoder-decoder: the encoder's metadata
    cross_kv: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # per layer: (B, H, Tenc, dk) x 2
    memory_states: Tensor | None = None  # encoder output (B, Tenc, D) until cross_kv is projected

    @property
    def length(self) -> int:
        return 0 if self.past is None else self.past.segment_ids.shape[1]

    def select(self, index: Tensor) -> StackCache:
        """The cache of rows ``index`` (B',) long: reorders beams, or repeats each row num_beams times."""
        return replace(
            self,
            past=None if self.past is None else self.past.select(index),
            self_kv=[(k[index], v[index]) for k, v in self.self_kv],
            memory=None if self.memory is None else self.memory.select(index),
            cross_kv=[(k[index], v[index]) for k, v in self.cross_kv],
            memory_states=None if self.memory_states is None else self.memory_states[index])


def stack_flops(cfg: ModelConfig, q_len: int, kv_len: int, layers: int, cross_len: int = 0) -> float:
    """Forward matmul FLOPs of ``layers`` blocks for one sequence of ``q_len`` queries over ``kv_len`` keys
    (and ``cross_len`` encoder positions for cross-attention).

    PaLM's MFU convention (Chowdhery et al. 2022, appendix B): a multiply-add is 2 FLOPs; the projections
    count 2 x d_model x inner_dim per token and matrix; attention scores and the weighted sum count
    2 x 2 x q_len x kv_len x inner_dim at full q_len x kv_len (the kernels compute the masked part too);
    adapters count their two matrices; embedding lookups, norms, softmax and the relative bias are not counted.
    """
    d, inner = cfg.d_model, cfg.inner_dim
    ffn_mats = 3 if cfg.ffn == "gated-gelu" else 2
    per_token = 2 * (4 * d * inner) + 2 * ffn_mats * d * cfg.d_ff + 2 * 2 * kv_len * inner
    per_token += 2 * 2 * d * cfg.adapter_dim  # an adapter's two matrices (0 without adapters)
    if cross_len:
        # q and o on the decoder token; k and v are projected once per encoder token (counted below).
        per_token += 2 * (2 * d * inner) + 2 * 2 * cross_len * inner
    total = per_token * q_len
    if cross_len:
        total += 2 * (2 * d * inner) * cross_len
    return float(layers * total)


class Block(nn.Module):
    """One pre-norm layer: self-attention, optional cross-attention, feed-forward; each a residual branch.

    With ``cfg.adapter_dim`` an adapter (dense-ReLU-dense with a residual, Section 3.5.1) follows the
    feed-forward network, inside its residual branch: ``x + dropout(adapter(ffn(norm(x))))``. Everything a
    block computes happens in its ``forward`` (the cross-attention keys and values of the encoder output too),
    so a block sharded on its own (``t5lit.fsdp``) holds its weights whenever one of them is used.
    """

    def __init__(self, cfg: ModelConfig, cross_attention: bool):
        super().__init__()
        self.self_attn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.self_attn = Attention(cfg)
        if cross_attention:
            self.cross_attn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
            self.cross_attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.ffn = FeedForward(cfg)
        self.adapter = Adapter(cfg.d_model, cfg.adapter_dim, cfg.dropout_rate) if cfg.adapter_dim else None
        self.dropout = nn.Dropout(cfg.dropout_rate)
        self.has_cross = cross_attention

    def forward(self, x: Tensor, *, mask: AttentionMask, past_kv: tuple[Tensor, Tensor] | None = None,
                memory: Tensor | None = None, memory_kv: tuple[Tensor, Tensor] | None = None,
                cross_mask: AttentionMask | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
        """x (B, T, D) -> (B, T, D), this layer's self-attention keys/values including the past, and its
        cross-attention keys/values (B, H, Tenc, dk) x 2: ``memory_kv`` when given (a decoding cache holds
        them), else projected from ``memory`` (B, Tenc, D), the encoder output; None without cross-attention."""
        q, k, v = self.self_attn.project_qkv(self.self_attn_norm(x))  # (B, H, T, dk) x 3
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], 2), torch.cat([past_kv[1], v], 2)  # (B, H, Tpast + T, dk)
        x = x + self.dropout(self.self_attn(q, (k, v), mask))
        if self.has_cross:
            if memory_kv is None:
                memory_kv = self.cross_attn.project_kv(memory)
            # T5's cross-attention has no position bias (Section 3.1.1: only self-attention is position-aware).
            q = self.cross_attn.project_q(self.cross_attn_norm(x))
            x = x + self.dropout(self.cross_attn(q, memory_kv, cross_mask))
        h = self.ffn(self.ffn_norm(x))
        if self.adapter is not None:
            h = self.adapter(h)
        x = x + self.dropout(h)
        return x, (k, v), memory_kv


class Stack(nn.Module):
    """Pre-norm blocks + final norm over already-embedded tokens; see the module docstring for the flags."""

    def __init__(self, cfg: ModelConfig, num_layers: int, *, causal: bool, cross_attention: bool,
                 bidirectional_bias: bool):
        super().__init__()
        # The mask kind follows cfg.attention (eager: allowed only; sdpa: additive; flex: BlockMask); a kernel
        # swapped in later (t5lit.model.cpu's "cpu" for sdpa) reads the same mask as the one it replaces.
        self.causal, self.cross_attention, self.backend = causal, cross_attention, cfg.attention
        self.rel_bias = RelativePositionBias(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                             cfg.num_heads, bidirectional_bias)
        self.layers = nn.ModuleList(Block(cfg, cross_attention) for _ in range(num_layers))
        self.final_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x: Tensor, seq: SeqInfo, memory: Tensor | None = None, memory_seq: SeqInfo | None = None,
                cache: StackCache | None = None) -> Tensor:
        """x (B, T, D) embedded (and dropped-out) tokens -> hidden states (B, T, D).

        memory (B, Tenc, D) / memory_seq: the encoder output, for a stack with cross-attention (with a cache,
        given once, on the first call). cache: incremental decoding; ``seq`` then describes only the new
        positions, and the cache is updated in place.
        """
        if self.cross_attention and memory is None and (cache is None or cache.memory is None):
            raise ValueError("a stack with cross-attention needs the encoder output (memory)")
        past = None if cache is None else cache.past
        keys = seq if past is None else past.cat(seq)  # metadata of all keys (B, Tpast + T)
        q_start = 0 if past is None else past.segment_ids.shape[1]
        # bidirectional or not is fixed by the table; one bias for all layers (B|1, H, T, Tpast + T)
        if seq.plain and past is None:
            bias = self.rel_bias.plain(seq.positions.shape[1], keys.positions.shape[1])
        else:
            bias = self.rel_bias(seq.positions, keys.positions)

        if cache is not None and memory is not None:
            cache.memory, cache.memory_states = memory_seq, memory
        if cache is not None and cache.memory is not None:
            memory_seq = cache.memory

        use_flex = self.backend == "flex" and cache is None  # incremental steps use sdpa (one query row)
        cross_mask = None
        if use_flex:
            check_flex_device(x)
            mask = AttentionMask(None, bias, block_mask=flex_block_mask(FlexMaskSpec(
                seq.segment_ids, keys.segment_ids, keys.key_ok, self.causal, seq.prefix, keys.prefix)))
            if self.cross_attention:
                cross_mask = AttentionMask(None, block_mask=flex_block_mask(FlexMaskSpec(
                    seq.segment_ids, memory_seq.segment_ids, memory_seq.key_ok, causal=False)))
        else:
            # Built once per pass and shared by every layer (not once per layer): (B, H, T, Tpast + T).
            dtype = mask_dtype(x)

            def attention_mask(bias: Tensor | None, allowed: Tensor) -> AttentionMask:  # eager reads no additive
                additive = None if self.backend == "eager" else additive_mask(bias, allowed, dtype)
                return AttentionMask(allowed, bias, additive)

            mask = attention_mask(bias, self_attention_allowed(seq, keys, q_start, self.causal))  # (B, 1, T, Tk)
            if self.cross_attention:
                cross_mask = attention_mask(None, cross_attention_allowed(seq, memory_seq))  # (B, 1, T, Tenc)

        new_kv = []
        for i, layer in enumerate(self.layers):
            memory_kv = None
            if self.cross_attention and cache is not None:
                if len(cache.cross_kv) > i:  # projected by the first call, once per layer
                    memory_kv = cache.cross_kv[i]
                else:
                    memory = cache.memory_states
            past_kv = cache.self_kv[i] if cache is not None and past is not None else None
            x, kv, memory_kv = layer(x, mask=mask, past_kv=past_kv, memory=memory, memory_kv=memory_kv,
                                     cross_mask=cross_mask)
            if cache is not None and self.cross_attention and len(cache.cross_kv) <= i:
                cache.cross_kv.append(memory_kv)
            new_kv.append(kv)
        if cache is not None:
            cache.past, cache.self_kv, cache.memory_states = keys, new_kv, None
        return self.dropout(self.final_norm(x))
