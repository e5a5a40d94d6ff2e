"""CPU fast paths of the model's two hot spots, each checked against the plain PyTorch reference
(tests/model/test_fastpaths.py); measurements in benchmarks/RESULTS.md.

``linear``: fp32 matrix multiplications through oneDNN. PyTorch's fp32 ``F.linear``/``mm`` call MKL, which on
non-Intel x86 (e.g. AMD EPYC) runs its AVX2 kernels; oneDNN's run AVX-512 and measured ~2.2x faster for the
forward and the input gradient, ~1.5x for the weight gradient on a 2-core EPYC. bf16 (autocast) already goes
through oneDNN, so it is left to ``F.linear``. The oneDNN call is a custom op, opaque to torch.compile.

``CPUAttention``: training attention with T5's learned relative bias, which the fused CPU kernel cannot
differentiate (see the class).

Both apply to CPU tensors only (attention: in grad mode, without attention dropout); elsewhere the model
uses F.linear and sdpa/flex. ``set_fast_paths(False)`` turns them off, for comparisons with the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_ENABLED = {"on": True}


def set_fast_paths(enabled: bool) -> None:
    """Turn the CPU fast paths of this module on or off (process-wide; on by default)."""
    _ENABLED["on"] = bool(enabled)


def _onednn_ok() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """x (..., K) @ weight (N, K)^T -> (..., N), no bias: F.linear, through oneDNN for fp32 on CPU."""
    if (_ENABLED["on"] and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and _ONEDNN):
        return _OneDNNLinear.apply(x, weight)
    return F.linear(x, weight)


@torch.library.custom_op("t5lit::onednn_mm_t", mutates_args=())
def _mm_t(a: Tensor, b: Tensor) -> Tensor:
    """a (..., K) @ b (N, K)^T by oneDNN (``b`` may be a transposed view). An opaque op to torch.compile."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b, None, "none", [], "")


@_mm_t.register_fake
def _(a: Tensor, b: Tensor) -> Tensor:
    return a.new_empty((*a.shape[:-1], b.shape[0]))


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T; dx = dy W; dW = dy^T x (rows of x and dy flattened), each one oneDNN matmul."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return _mm_t(x, weight.contiguous())

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        dx = _mm_t(dy, weight.t()) if ctx.needs_input_grad[0] else None  # (..., N) @ (N, K)
        dw = None
        if ctx.needs_input_grad[1]:
            dw = _mm_t(dy.reshape(-1, dy.shape[-1]).t(), x.reshape(-1, x.shape[-1]).t())  # (N, M) @ (M, K)
        return dx, dw


def use_cpu_attention(q: Tensor, p: float) -> bool:
    """``CPUAttention`` for training on CPU without attention dropout (the flash kernel has none on CPU)."""
    return _ENABLED["on"] and q.device.type == "cpu" and torch.is_grad_enabled() and p == 0.0


class CPUAttention(torch.autograd.Function):
    """softmax(q k^T + mask) v on CPU, with the gradient of the relative bias inside ``mask`` (scale 1, T5's).

    PyTorch's fused CPU (flash) kernel takes an additive mask but gives it no gradient, so sdpa with T5's
    learned bias runs its math path, which stores (B, H, Tq, Tk) weights per layer for backward; and its
    flash backward measured slower than the one here even without a bias (cross-attention). Here the forward
    is the flash kernel (it keeps only the output and the log-sum-exp (B, H, Tq)), and the backward
    recomputes the weights in cache-sized chunks (``_attention_backward``):

        P = exp(q k^T + mask - lse)    dv = P^T dO    dS = P * (dO v^T - rowsum(dO * O))
        dq = dS k                      dk = dS^T q    dbias = dS, summed over the batch if bias has one row

    mask (B|1, H|1, Tq, Tk) is ``bias`` (or zeros) with the disallowed positions at the most negative value,
    detached: there P is 0, so dS is 0 and the bias gets no gradient, as masked_fill's backward would give it.
    bias (B|1, H, Tq, Tk) or None (cross-attention) only receives the gradient.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, bias):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask,
                                                                              scale=1.0)
        ctx.save_for_backward(q, k, v, mask, out, lse)
        ctx.bias_rows = 0 if bias is None else bias.shape[0]
        return out

    @staticmethod
    def backward(ctx, d_out):
        with torch.autocast("cpu", enabled=False):  # torch.compile traces backward under forward's autocast
            return _attention_backward(d_out, *ctx.saved_tensors, ctx.bias_rows)


def _attention_backward(d_out: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, out: Tensor, lse: Tensor,
                        bias_rows: int) -> tuple[Tensor | None, ...]:
    """Gradients of ``CPUAttention``, c (row, head) pairs at a time: the recomputed (c, Tq, Tk) weights
    (~4 MiB fp32) stay in cache and under malloc's mmap threshold, where a fresh (B, H, Tq, Tk) tensor
    page-faults on every use.

    Scores and the softmax are fp32; with bf16 inputs (autocast), P, dP and dS are rounded to bf16 for the
    four products with dO, P and dS (fp32 accumulation), as FlashAttention's backward does.
    """
    B, H, Tq, dk = q.shape
    Tk = k.shape[2]
    f32, low = torch.float32, q.dtype  # low: the dtype of the products (fp32, or autocast's bf16)
    qf, kf = (t.to(f32).reshape(B * H, -1, dk) for t in (q, k))  # (B*H, T, dk), for the fp32 scores
    ql, kl, vl, gl = (t.reshape(B * H, -1, dk) for t in (q, k, v, d_out.to(low)))
    mask = mask.expand(B, H, Tq, Tk)  # a view: (B|1, H|1, ..) broadcasts
    lse = lse.reshape(B * H, Tq, 1)
    delta = (d_out.to(f32) * out.to(f32)).sum(-1, keepdim=True).reshape(B * H, Tq, 1)  # rowsum(dO * O)
    dq, dk_, dv = (torch.empty(B * H, n, dk, dtype=low, device=q.device) for n in (Tq, Tk, Tk))
    d_bias = torch.zeros(bias_rows * H, Tq, Tk, dtype=f32, device=q.device) if bias_rows else None
    # c (batch, head) pairs per chunk, ~1M weights: a divisor of H (part of one row), or whole rows when small
    c = max(1, (1 << 20) // (Tq * Tk))
    c = H * min(B, c // H) if c >= H else next(d for d in range(c, 0, -1) if H % d == 0)
    for i in range(0, B * H, c):
        r = slice(i, i + c)
        b, h = divmod(i, H)
        m = mask[b, h: h + c] if c <= H else mask[b: b + c // H].reshape(-1, Tq, Tk)  # (c, Tq, Tk)
        p = torch.baddbmm(m, qf[r], kf[r].transpose(1, 2)).sub_(lse[r]).exp_()  # P (c, Tq, Tk), fp32
        p = p.to(low)  # a copy only under autocast
        torch.bmm(p.transpose(1, 2), gl[r], out=dv[r])
        ds = torch.bmm(gl[r], vl[r].transpose(1, 2)).sub_(delta[r]).mul_(p)  # dS (c, Tq, Tk), in ``low``
        torch.bmm(ds, kl[r], out=dq[r])
        torch.bmm(ds.transpose(1, 2), ql[r], out=dk_[r])
        if bias_rows == B and B > 1:  # packed: a bias per row
            d_bias[r] = ds
        elif bias_rows:  # bias (1, H, ..): one row for the whole batch
            if c <= H:
                d_bias[h: h + c] += ds
            else:
                d_bias += ds.view(-1, H, Tq, Tk).sum(0)
    grads = (t.view(B, H, -1, dk) for t in (dq, dk_, dv))
    return *grads, None, None if d_bias is None else d_bias.view(bias_rows, H, Tq, Tk)


_ONEDNN = _onednn_ok()
