"""T5's building blocks (paper Section 3.1.1; transformers' ``modeling_t5`` for the exact numerics).

RMS layer norm (scale only), relative position bias (bucketed, one scalar per head), multi-head attention
without biases and without 1/sqrt(d_kv) scaling (T5 folds it into the initialisation of q), the attention
kernels, the two feed-forward kinds (relu; gated-gelu of T5 1.1), adapter layers (Table 10) and the tied
output layer. Attention reads an ``AttentionMask`` that the stack builds once per pass: the boolean
``allowed`` (B, 1, Tq, Tk), True where a query may look, the bias, and their sum as sdpa's additive mask.

Every module calls its own submodules (``self.q(x)``, ``self.wo(h)``), so hooks, adapters and module swaps
see each projection. Attention kernels are looked up by name in ``ATTENTION_KERNELS``: "eager" (the readable
reference), "sdpa" (``F.scaled_dot_product_attention`` on every device), "flex" (CUDA); ``t5lit.model.cpu``
registers "cpu" and switches sdpa models to it from outside (``apply_cpu_fast_paths``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t5lit.config import ModelConfig
from t5lit.registry import ConfigError, Registry


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
    """bias (+0 where allowed, a most negative finite value elsewhere): (B, H|1, Tq, Tk).

    A fully masked (padding) query row gets equal scores everywhere, so its softmax stays finite. The value is
    the dtype's most negative finite one, but never below bfloat16's: an fp32 mask meets bf16 scores under CPU
    autocast (the scores' matmul runs in bf16), where fp32's minimum would round to -inf and a fully masked
    row (packed rows' padding, in cross-attention) would give NaN.
    """
    neg = max(torch.finfo(dtype).min, torch.finfo(torch.bfloat16).min)
    if bias is None:
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, neg)
    return bias.to(dtype).masked_fill(~allowed, neg)


# kernel(q, k, v (B, H, T, dk), mask, dropout_p) -> (B, H, Tq, dk); dropout_p is 0 outside training.
AttentionKernel = Callable[[Tensor, Tensor, Tensor, AttentionMask, float], Tensor]
ATTENTION_KERNELS: Registry[AttentionKernel] = Registry("attention kernel")


class Attention(nn.Module):
    """Multi-head attention, no biases, no 1/sqrt(d_kv) scaling (T5, Section 3.1.1 via Mesh TensorFlow).

    q, k, v and o are separate ``nn.Linear`` modules (transformers' layout, for ``hf.py``), each called on
    its own. Fusing [q; k; v] into one matmul of concatenated weights measured within noise on a 2-core CPU
    (training, d_model 256: 1-3% more tokens/s against a 10% spread; decoding, d_model 512: equal), so the
    modules stay the computation. ``kernel`` names the entry of ``ATTENTION_KERNELS`` that mixes the values
    (``cfg.attention`` until a fast path swaps it).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.d_kv, self.kernel = cfg.num_heads, cfg.d_kv, cfg.attention
        self.dropout = cfg.dropout_rate
        self.q = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.inner_dim, bias=False)
        self.o = nn.Linear(cfg.inner_dim, cfg.d_model, bias=False)

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, d_kv={self.d_kv}, kernel={self.kernel!r}"

    def heads(self, x: Tensor) -> Tensor:  # (B, T, H*dk) -> (B, H, T, dk)
        return x.unflatten(-1, (self.num_heads, self.d_kv)).transpose(1, 2)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # (B, T, D) -> 3 x (B, H, T, dk)
        return self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:  # (B, Tk, D) -> 2 x (B, H, Tk, dk)
        return self.heads(self.k(source)), self.heads(self.v(source))

    def project_q(self, x: Tensor) -> Tensor:  # (B, Tq, D) -> (B, H, Tq, dk)
        return self.heads(self.q(x))

    def forward(self, q: Tensor, kv: tuple[Tensor, Tensor], mask: AttentionMask) -> Tensor:
        """q (B, H, Tq, dk) projected queries; kv: keys, values (B, H, Tk, dk); mask: the stack's. -> (B, Tq, D)."""
        k, v = kv
        out = ATTENTION_KERNELS.get(self.kernel)(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).flatten(2))  # (B, H, Tq, dk) -> (B, Tq, H*dk) -> (B, Tq, D)


@ATTENTION_KERNELS.add("eager")
def eager_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, p: float) -> Tensor:
    """The readable reference: softmax(q k^T + bias, masked) v, softmax in fp32. (B, H, Tq, dk)."""
    scores = (q @ k.transpose(-1, -2)).float()  # (B, H, Tq, Tk); no 1/sqrt(d_kv)
    if mask.bias is not None:
        scores = scores + mask.bias.float()
    scores = scores.masked_fill(~mask.allowed, torch.finfo(torch.float32).min)
    weights = F.dropout(scores.softmax(-1), p=p, training=p > 0.0).to(v.dtype)
    return weights @ v


@ATTENTION_KERNELS.add("sdpa")
def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, p: float) -> Tensor:
    """``F.scaled_dot_product_attention`` with the additive mask (bias + masking) and scale 1. (B, H, Tq, dk)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.additive.to(q.dtype), dropout_p=p, scale=1.0)


@ATTENTION_KERNELS.add("flex")
def flex_attention_kernel(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, p: float) -> Tensor:
    """FlexAttention over the stack's BlockMask; sdpa for incremental decoding, where there is none."""
    if mask.block_mask is None:
        return sdpa_attention(q, k, v, mask, p)
    return _flex(q, k, v, mask.bias, mask.block_mask, p)


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
            h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)  # "gelu_new" (B, T, d_ff)
        else:
            h = F.relu(self.wi(x))
        return self.wo(self.dropout(h))


class Adapter(nn.Module):
    """An adapter layer (paper Section 3.5.1, after Houlsby et al. 2019): dense -> ReLU -> dense of inner width
    ``dim``, back to d_model, with a residual: y = x + up(dropout(relu(down(x)))). The stack puts one after the
    feed-forward network of every block; ``up`` starts at zero (``init_weights``), so a new adapter is the
    identity and an adapter model computes what its pre-trained backbone computed."""

    def __init__(self, d_model: int, dim: int, dropout_rate: float):
        super().__init__()
        self.down = nn.Linear(d_model, dim, bias=False)
        self.up = nn.Linear(dim, d_model, bias=False)
        self.dropout = nn.Dropout(dropout_rate)

    def extra_repr(self) -> str:
        return f"dim={self.down.out_features}"

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return x + self.up(self.dropout(F.relu(self.down(x))))  # (B, T, dim) inside


class TiedOutput(nn.Module):
    """The output layer of a tied model (T5 1.0): logits = (h * d_model**-0.5) E^T, E the embedding's weight.

    Mesh TensorFlow rescales before the tied output layer. The module owns no parameter: it reads the
    embedding module's weight at call time, holding that module outside the module tree, so the state dict
    lists the weight once (as ``embed.weight``) and moving or loading the model moves and loads it.
    """

    def __init__(self, embedding: nn.Embedding, d_model: int):
        super().__init__()
        self.scale = d_model ** -0.5
        object.__setattr__(self, "embedding", embedding)  # not a submodule (see above)

    def extra_repr(self) -> str:
        return f"tied to the embedding, scale={self.scale:.4g}"

    def forward(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, V)
        return F.linear(h * self.scale, self.embedding.weight)


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
    elif isinstance(module, Adapter):
        module.down.weight.normal_(0.0, f * d ** -0.5)  # as the FFN's wi
        module.up.weight.zero_()  # the identity until fine-tuning moves it
