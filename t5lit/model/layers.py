"""T5's building blocks (paper Section 3.1.1; transformers' ``modeling_t5`` for the exact numerics).

RMS layer norm (scale only), relative position bias (bucketed, one scalar per head), multi-head attention
without biases and without 1/sqrt(d_kv) scaling (T5 folds it into the initialisation of q), three attention
backends (eager reference, sdpa, flex) and the two feed-forward kinds (relu; gated-gelu of T5 1.1).
Attention reads an ``AttentionMask`` that the stack builds once per pass: the boolean ``allowed``
(B, 1, Tq, Tk), True where a query may look, the bias, and their sum as sdpa's additive mask. On CPU the sdpa
backend trains through ``t5lit.model.cpu`` (oneDNN linears, flash forward with a chunked backward).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t5lit.config import ModelConfig
from t5lit.model.cpu import CPUAttention, linear, use_cpu_attention
from t5lit.registry import ConfigError


class RMSNorm(nn.Module):
    """Scale-only layer norm: y = w * x / sqrt(mean(x^2) + eps); no bias, no mean subtraction (T5)."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        variance = x.float().pow(2).mean(-1, keepdim=True)  # statistics in fp32, as T5 does
        x = x.float() * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def relative_position_bucket(relative_position: Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Tensor:
    """T5's bucket of ``relative_position = key_pos - query_pos`` (Mesh TensorFlow's formula).

    Half the buckets (all when unidirectional) hold exact small distances, the rest grow logarithmically up
    to ``max_distance``; farther keys share the last bucket. Bidirectional uses half the buckets for keys
    after the query (offset by num_buckets // 2); unidirectional maps every key after the query to bucket 0.
    E.g. bidirectional, 32 buckets, max 128: -1 -> 1, 0 -> 0, 1 -> 17, 200 -> 31.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).to(relative_position.dtype) * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # keys after the query: distance 0
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets for distances in [max_exact, max_distance); float math as T5 does it
    large = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(relative_position.dtype)
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """One learned scalar per (bucket, head), added to attention logits; owned by the stack, shared by its layers."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, num_heads)
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """(B|1, Tq), (B|1, Tk) -> bias (B|1, H, Tq, Tk)."""
        rel = key_positions[:, None, :] - query_positions[:, :, None]  # (B, Tq, Tk)
        buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(0, 3, 1, 2)  # (B, Tq, Tk, H) -> (B, H, Tq, Tk)

    def plain(self, Tq: int, Tk: int) -> Tensor:
        """The bias of positions 0..Tq-1 against 0..Tk-1 (every unpacked row): (1, H, Tq, Tk), equal to
        ``forward(arange(Tq)[None], arange(Tk)[None])``. The bias depends on k - q only, so the table is read
        for the Tq + Tk - 1 distances and laid along the diagonals; its backward then sums diagonals instead
        of scattering Tq * Tk indices into the table."""
        device = self.embedding.weight.device
        rel = torch.arange(-(Tq - 1), Tk, device=device)  # distances k - q, (Tq + Tk - 1,)
        buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)
        by_distance = self.embedding(buckets).t()  # (H, Tq + Tk - 1)
        # windows[h, s, j] = by_distance[h, s + j]; query i takes window s = Tq - 1 - i (distance j - i)
        return by_distance.unfold(1, Tk, 1).flip(1)[None]  # (1, H, Tq, Tk)


@dataclass
class FlexMaskSpec:
    """Per-token data from which flex builds its BlockMask (the same rule as the stack's dense mask):

    allowed(b, q, k) = key_ok[b, k] and q_seg[b, q] == k_seg[b, k]
                       and (not causal or k <= q or (q_prefix[b, q] and k_prefix[b, k]))
    Indices are absolute, so flex is used only for full (non-incremental) passes.
    """

    q_seg: Tensor  # (B, Tq) long; all ones when unpacked
    k_seg: Tensor  # (B, Tk) long
    key_ok: Tensor  # (B, Tk) bool: False on padding keys (unpacked encoder side)
    causal: bool
    q_prefix: Tensor | None = None  # (B, Tq) bool: prefix LM's fully visible part
    k_prefix: Tensor | None = None  # (B, Tk) bool


def flex_mask_mod(spec: FlexMaskSpec):
    """The mask_mod of ``spec``: the same rule as the stack's dense ``allowed`` mask, per (b, q, k) index."""

    def mask_mod(b, h, q_idx, kv_idx):
        ok = spec.key_ok[b, kv_idx] & (spec.q_seg[b, q_idx] == spec.k_seg[b, kv_idx])
        if spec.causal:
            visible = kv_idx <= q_idx
            if spec.q_prefix is not None:
                visible = visible | (spec.q_prefix[b, q_idx] & spec.k_prefix[b, kv_idx])
            ok = ok & visible
        return ok

    return mask_mod


def flex_block_mask(spec: FlexMaskSpec):
    """A BlockMask (built once per stack and shared by its layers) for causal / prefix / packed attention."""
    from torch.nn.attention.flex_attention import create_block_mask

    B, Tq = spec.q_seg.shape
    Tk = spec.k_seg.shape[1]
    return create_block_mask(flex_mask_mod(spec), B, None, Tq, Tk, device=spec.q_seg.device)


def check_flex_device(x: Tensor) -> None:
    if x.device.type != "cuda":
        raise ConfigError("attention 'flex' needs CUDA (FlexAttention has no CPU backward); use 'sdpa'")


@dataclass
class AttentionMask:
    """What a stack computes once per pass and every layer's attention reads (saved once for backward).

    allowed (B, 1, Tq, Tk) bool, True where a query may look (None with flex); bias (B|1, H, Tq, Tk) the
    relative position bias (None for cross-attention); additive: bias + (0 where allowed, most negative
    finite value elsewhere), (B, H|1, Tq, Tk), the mask sdpa takes; block_mask: flex's BlockMask.
    """

    allowed: Tensor | None
    bias: Tensor | None = None
    additive: Tensor | None = None
    block_mask: object = None


def additive_mask(bias: Tensor | None, allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """bias (+0 where allowed, dtype's most negative finite value elsewhere): (B, H|1, Tq, Tk).

    A fully masked (padding) query row gets equal scores everywhere, so its softmax stays finite.
    """
    neg = torch.finfo(dtype).min
    if bias is None:
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, neg)
    return bias.to(dtype).masked_fill(~allowed, neg)


class Attention(nn.Module):
    """Multi-head attention, no biases, no 1/sqrt(d_kv) scaling (T5, Section 3.1.1 via Mesh TensorFlow).

    The q, k, v weights stay separate parameters (transformers' layout, for ``hf.py``) but are applied as one
    matrix multiplication: [q; k; v] in self-attention, [k; v] over the encoder output in cross-attention.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.d_kv, self.backend = cfg.num_heads, cfg.d_kv, cfg.attention
        self.dropout = cfg.dropout_rate
        self.q = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.o = nn.Linear(cfg.inner_dim, cfg.d_model, bias=False)

    def heads(self, x: Tensor) -> Tensor:  # (B, T, H*dk) -> (B, H, T, dk)
        return x.unflatten(-1, (self.num_heads, self.d_kv)).transpose(1, 2)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # (B, T, D) -> 3 x (B, H, T, dk)
        qkv = linear(x, torch.cat([self.q.weight, self.k.weight, self.v.weight]))  # (B, T, 3*H*dk)
        q, k, v = qkv.chunk(3, dim=-1)
        return self.heads(q), self.heads(k), self.heads(v)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:  # (B, Tk, D) -> 2 x (B, H, Tk, dk)
        k, v = linear(source, torch.cat([self.k.weight, self.v.weight])).chunk(2, dim=-1)  # (B, Tk, H*dk) x 2
        return self.heads(k), self.heads(v)

    def project_q(self, x: Tensor) -> Tensor:  # (B, Tq, D) -> (B, H, Tq, dk)
        return self.heads(linear(x, self.q.weight))

    def forward(self, q: Tensor, kv: tuple[Tensor, Tensor], mask: AttentionMask) -> Tensor:
        """q (B, H, Tq, dk) projected queries; kv: keys, values (B, H, Tk, dk); mask: the stack's. -> (B, Tq, D)."""
        k, v = kv
        p = self.dropout if self.training else 0.0
        if self.backend == "flex" and mask.block_mask is not None:
            out = _flex(q, k, v, mask.bias, mask.block_mask, p)
        elif self.backend == "eager":
            out = _eager(q, k, v, mask.bias, mask.allowed, p, self.training)
        elif use_cpu_attention(q):
            out = CPUAttention.apply(q, k, v, mask.additive.detach(), mask.bias, p)
        else:  # sdpa (flex falls back here for incremental decoding, where there is no BlockMask)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.additive.to(q.dtype), dropout_p=p,
                                                 scale=1.0)
        return linear(out.transpose(1, 2).flatten(2), self.o.weight)  # (B, H, Tq, dk) -> (B, Tq, H*dk) -> (B, Tq, D)


def _eager(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, allowed: Tensor, p: float,
           training: bool) -> Tensor:
    """The readable reference: softmax(q k^T + bias, masked) v, softmax in fp32. (B, H, Tq, dk)."""
    scores = (q @ k.transpose(-1, -2)).float()  # (B, H, Tq, Tk); no 1/sqrt(d_kv)
    if bias is not None:
        scores = scores + bias.float()
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    weights = F.dropout(scores.softmax(-1), p=p, training=training).to(v.dtype)
    return weights @ v


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, block_mask, p: float) -> Tensor:
    """FlexAttention: score_mod adds the stack's precomputed bias; the BlockMask skips masked blocks.

    Uncompiled, flex_attention is a dense reference that materialises the scores; its fused kernel comes from
    torch.compile. Inside a compiled model the call is traced with the model; in an eager model on CUDA it
    goes through a compiled flex_attention of its own.
    """
    from torch.nn.attention.flex_attention import flex_attention

    check_flex_device(q)
    if p > 0.0:
        raise ConfigError("attention 'flex' has no attention-weight dropout; set dropout_rate=0 or use 'sdpa'")
    if bias is None:
        score_mod = None
    else:
        one_batch = bias.shape[0] == 1  # unpacked: one bias shared by every row

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + bias[0 if one_batch else b, h, q_idx, kv_idx].to(score.dtype)

    fn = flex_attention if torch.compiler.is_compiling() or q.device.type != "cuda" else _compiled_flex_attention()
    return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=1.0)


class FeedForward(nn.Module):
    """relu: wo(dropout(relu(wi x))); gated-gelu (T5 1.1): wo(dropout(gelu_tanh(wi_0 x) * wi_1 x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.ffn == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        if self.gated:
            h = F.gelu(linear(x, self.wi_0.weight), approximate="tanh")  # "gelu_new" (B, T, d_ff)
            h = h * linear(x, self.wi_1.weight)
        else:
            h = F.relu(linear(x, self.wi.weight))
        return linear(self.dropout(h), self.wo.weight)


@torch.no_grad()
def init_weights(module: nn.Module, cfg: ModelConfig) -> None:
    """transformers' T5 ``_init_weights`` (factor = cfg.initializer_factor) for one module (no recursion)."""
    f, d, kv, h = cfg.initializer_factor, cfg.d_model, cfg.d_kv, cfg.num_heads
    if isinstance(module, RMSNorm):
        module.weight.fill_(f * 1.0)
    elif isinstance(module, RelativePositionBias):
        module.embedding.weight.normal_(0.0, f * d ** -0.5)
    elif isinstance(module, Attention):
        module.q.weight.normal_(0.0, f * (d * kv) ** -0.5)  # folds T5's missing 1/sqrt(d_kv) into q
        module.k.weight.normal_(0.0, f * d ** -0.5)
        module.v.weight.normal_(0.0, f * d ** -0.5)
        module.o.weight.normal_(0.0, f * (h * kv) ** -0.5)
    elif isinstance(module, FeedForward):
        for name in ("wi", "wi_0", "wi_1"):
            if hasattr(module, name):
                getattr(module, name).weight.normal_(0.0, f * d ** -0.5)
        module.wo.weight.normal_(0.0, f * cfg.d_ff ** -0.5)
