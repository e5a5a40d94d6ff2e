"""CPU fast paths of the model's two hot spots, applied to a built model from outside (the model never
imports this module); each checked against the plain PyTorch reference (tests/model/test_fastpaths.py);
measurements in benchmarks/RESULTS.md.

``apply_cpu_fast_paths(model)`` swaps, in place, the fast paths that ``plan_fast_paths`` chooses for this CPU
(its vendor and ISA tier, ``t5lit.model.cpu_caps``; ``T5LIT_CPU_FAST_PATHS`` overrides, see there):

- ``onednn_linear``: every ``nn.Linear`` for a ``OneDNNLinear`` holding the same Parameter, and the tied
  output layer for a ``OneDNNTiedOutput``: fp32 matrix multiplications through oneDNN. PyTorch's fp32
  ``F.linear``/``mm`` call MKL, which on non-Intel x86 (e.g. AMD EPYC) runs its AVX2 kernels; oneDNN's run
  AVX-512 and measured 1.2-2x faster for the forward and the input gradient on a 2-core EPYC (Zen 4). The
  weight gradient contracts over the rows, so one operand must be transposed in memory for oneDNN; it goes
  to oneDNN only where that copy is cheap (``_weight_grad``). Chosen on non-Intel CPUs with AVX-512 only: on
  Intel's, MKL runs its own AVX-512 (or AMX) kernels, and without AVX-512 both libraries run AVX2. bf16
  (autocast) already goes through oneDNN, so it is left to ``F.linear``. The oneDNN call is a custom op,
  opaque to torch.compile.
- ``cpu_attention``: the attention kernel of every sdpa ``Attention`` for "cpu": ``CPUAttention`` when
  training on CPU, T5's learned relative bias included, which the fused CPU kernel cannot differentiate (see
  the class); sdpa elsewhere (inference, other devices). Under bf16 autocast it keeps its bf16 weights for
  backward (within a budget, ``set_attention_weights``); in fp32 it recomputes them, for memory. "eager" (the
  reference) and "flex" (CUDA only) are left as they are. Chosen on every CPU: it saves the memory of sdpa's
  math path whatever the ISA.

The swapped modules check the device and dtype at each call and fall back to ``F.linear`` / sdpa, so a model
with fast paths still runs anywhere; ``set_fast_paths(False)`` makes them fall back everywhere, for
comparisons with the reference.

``tune_allocator``: glibc's malloc returns every large freed block to the system and gets it back with fresh,
zero-filled pages, so each (B, T, T)- or (rows, vocab)-sized activation of a training step page-faults again;
raising the mmap and trim thresholds keeps freed memory for the next step (a run's set-up applies it when it
trains on CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t5lit.model.layers import ATTENTION_KERNELS, Attention, AttentionMask, TiedOutput, sdpa_attention

_ENABLED = {"on": True}
FAST_PATHS = ("onednn_linear", "cpu_attention")
# Below this width the oneDNN linear saves nothing over MKL and its autograd.Function costs more than the
# product (a 2+2-layer width-64 model trained 9% slower with it, a 128-wide layer about breaks even; one
# thread of a Zen 4, RESULTS.md section 10): "auto" swaps only linears at least this wide on both sides.
ONEDNN_MIN_WIDTH = 128
ENV = "T5LIT_CPU_FAST_PATHS"


def set_fast_paths(enabled: bool) -> None:
    """Turn the CPU fast paths of this module on or off (process-wide; on by default)."""
    _ENABLED["on"] = bool(enabled)


@dataclass(frozen=True)
class FastPathPlan:
    """Which of FAST_PATHS a model gets on this CPU, and why each is on or off."""

    enabled: frozenset
    reasons: tuple  # ((name, reason), ...) in FAST_PATHS order
    linear_min_width: int = 0  # onednn_linear: only linears whose inputs and outputs are at least this wide

    def describe(self) -> str:
        """``"onednn_linear on (...); cpu_attention on (...)"``."""
        return "; ".join(f"{n} {'on' if n in self.enabled else 'off'} ({why})" for n, why in self.reasons)


def plan_fast_paths(caps=None, request: str | None = None) -> FastPathPlan:
    """The fast paths for ``caps`` (default: this machine's ``cpu_capabilities()``).

    ``request`` (default: ``$T5LIT_CPU_FAST_PATHS``, else "auto"): "auto" chooses by the CPU (the module
    docstring); "none" turns all off; "all" turns on every one this torch build supports; a comma-separated
    list of FAST_PATHS names turns on exactly those (for comparisons, and for CPUs this suite has not met).
    A path whose private PyTorch op is missing from this build stays off whatever the request.
    """
    from t5lit.model.cpu_caps import cpu_capabilities

    caps = caps or cpu_capabilities()
    request = (os.environ.get(ENV) or "auto") if request is None else request
    words = [w.strip() for w in request.split(",") if w.strip()] or ["auto"]
    unknown = [w for w in words if w not in (*FAST_PATHS, "auto", "all", "none")]
    if unknown or (len(words) > 1 and not set(words) <= set(FAST_PATHS)):
        raise ValueError(f"CPU fast paths {request!r}: use auto, all, none or a comma-separated list of "
                         f"{', '.join(FAST_PATHS)}")
    auto = {}
    if not _ONEDNN:
        auto["onednn_linear"] = (False, "this torch build has no oneDNN linear op")
    elif caps.vendor == "GenuineIntel":
        auto["onednn_linear"] = (False, "MKL runs its own AVX-512/AMX kernels on Intel CPUs")
    elif "avx512f" not in caps.flags:
        auto["onednn_linear"] = (False, "no AVX-512: oneDNN and MKL would both run AVX2 kernels")
    else:
        auto["onednn_linear"] = (True, f"fp32 by oneDNN's AVX-512 kernels, MKL runs AVX2 ones on {caps.vendor}; "
                                       f"layers at least {ONEDNN_MIN_WIDTH} wide")
    auto["cpu_attention"] = (True, "the relative bias's gradient without sdpa's math path" +
                             ("" if _FLASH else "; flash forward missing from this build: keeps the weights"))
    chosen = {}
    for name in FAST_PATHS:
        if words == ["auto"]:
            chosen[name] = auto[name]
        else:
            on = words == ["all"] or name in words
            missing = name == "onednn_linear" and not _ONEDNN
            chosen[name] = (on and not missing, auto[name][1] if missing else f"requested: {request}")
    return FastPathPlan(frozenset(n for n, (on, _) in chosen.items() if on),
                        tuple((n, why) for n, (_, why) in chosen.items()), ONEDNN_MIN_WIDTH if words == ["auto"] else 0)


def apply_cpu_fast_paths(model: nn.Module, plan: FastPathPlan | None = None) -> nn.Module:
    """Swap the fast paths of ``plan`` (default: ``plan_fast_paths()``) into ``model`` in place (see the
    module docstring) and return it.

    Parameters are not copied: each new module holds the Parameter of the one it replaces, so the state dict
    keys, the optimizer's parameters and weight tying are unchanged, and a module shared by two parents
    (a shared encoder/decoder) is replaced by one module shared the same way. Hooks registered on a replaced
    module stay on the old object: register them after this call. Idempotent.
    """
    plan = plan or plan_fast_paths()
    enabled = plan.enabled
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        if "onednn_linear" in enabled:
            for name, child in list(parent.named_children()):
                if id(child) not in replaced:
                    replaced[id(child)] = _fast_module(child, plan.linear_min_width)
                if replaced[id(child)] is not child:
                    setattr(parent, name, replaced[id(child)])
        if "cpu_attention" in enabled and isinstance(parent, Attention) and parent.kernel == "sdpa":
            parent.kernel = "cpu"
    return model


def _fast_module(module: nn.Module, min_width: int = 0) -> nn.Module:
    """The fast counterpart of ``module`` (sharing its Parameters), or ``module`` itself (also when one of its
    sides is narrower than ``min_width``)."""
    if type(module) is nn.Linear:  # exactly nn.Linear: subclasses (adapters, quantised layers) keep their forward
        wide = min(module.in_features, module.out_features) >= min_width
        return OneDNNLinear.from_linear(module) if wide else module
    if type(module) is TiedOutput:
        return OneDNNTiedOutput.from_tied(module) if min(module.embedding.weight.shape) >= min_width else module
    return module


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose fp32 CPU products run through oneDNN (``linear``); ``F.linear`` otherwise."""

    @classmethod
    def from_linear(cls, old: nn.Linear) -> OneDNNLinear:
        new = cls(old.in_features, old.out_features, bias=old.bias is not None, device="meta")
        new.weight, new.bias = old.weight, old.bias  # the same Parameters
        return new.train(old.training)

    def forward(self, x: Tensor) -> Tensor:
        y = linear(x, self.weight)
        return y if self.bias is None else y + self.bias


class OneDNNTiedOutput(TiedOutput):
    """The tied output layer, its fp32 CPU product through oneDNN: logits = linear(h * scale, E)."""

    @classmethod
    def from_tied(cls, old: TiedOutput) -> OneDNNTiedOutput:
        new = cls(old.embedding, 1)
        new.scale = old.scale
        return new.train(old.training)

    def forward(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, V)
        return linear(h * self.scale, self.embedding.weight)


@ATTENTION_KERNELS.add("cpu")
def cpu_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, p: float) -> Tensor:
    """``CPUAttention`` for training on CPU (with or without attention-weight dropout), else sdpa."""
    if _ENABLED["on"] and q.device.type == "cpu" and torch.is_grad_enabled():
        return CPUAttention.apply(q, k, v, mask.additive.detach(), mask.bias, p)
    return sdpa_attention(q, k, v, mask, p)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, glibc's malloc.h
_TUNED = {"done": False}


def tune_allocator() -> bool:
    """Keep freed memory in the process for reuse instead of handing it back to the kernel (glibc only).

    Allocations up to 32 MiB (glibc's largest mmap threshold) come from the heap, and up to 1 GiB of free heap
    is kept rather than trimmed: a training step then reuses the previous step's pages instead of
    page-faulting fresh zeroed ones (measured 10-15% of a CPU bf16 step; benchmarks/RESULTS.md). Larger
    blocks are still mapped per allocation. Process-wide and idempotent; returns whether it applied. Called
    by a run's set-up (and the benchmarks), not by the model or the LightningModule.
    ``T5LIT_TUNE_MALLOC=0`` in the environment turns it off.
    """
    if _TUNED["done"]:
        return True
    if os.environ.get("T5LIT_TUNE_MALLOC", "1").strip() == "0":
        return False
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
    _TUNED["done"] = ok
    return ok


def _onednn_ok() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """x (..., K) @ weight (N, K)^T -> (..., N), no bias: F.linear, through oneDNN for fp32 on CPU."""
    if (_ENABLED["on"] and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and _ONEDNN):
        return _OneDNNLinear.apply(x, weight)
    return F.linear(x, weight)


def _mm_t(a: Tensor, b: Tensor) -> Tensor:
    """a (..., K) @ b (N, K)^T by oneDNN (``b`` may be a transposed view): the op itself when eager (the custom
    op's Python dispatch costs ~20 us a call, a tenth of a small product), the custom op when torch.compile
    traces (opaque to it)."""
    return _mm_t_op(a, b) if torch.compiler.is_compiling() else _onednn_mm_t(a, b)


def _onednn_mm_t(a: Tensor, b: Tensor) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b, None, "none", [], "")


@torch.library.custom_op("t5lit::onednn_mm_t", mutates_args=())
def _mm_t_op(a: Tensor, b: Tensor) -> Tensor:
    """``_mm_t`` as an op opaque to torch.compile."""
    return _onednn_mm_t(a, b)


@_mm_t_op.register_fake
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
            dw = _weight_grad(dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1]))
        return dx, dw


def _weight_grad(dy: Tensor, x: Tensor) -> Tensor:
    """dW = dy^T x for dy (M, N), x (M, K) -> (N, K): a contraction over the rows M, so one operand must be
    transposed in memory for oneDNN. When N and K are within 4x of each other that copy costs more than oneDNN
    saves over ``torch.mm``, which takes the transposed operand as it is; otherwise oneDNN, transposing the
    narrower operand (dW^T = x^T dy when K < N, returned as a transposed view)."""
    M, N = dy.shape
    K = x.shape[1]
    if max(N, K) < 4 * min(N, K):
        return torch.mm(dy.t(), x)
    if K < N:
        return _mm_t(x.t(), dy.t()).t()  # (K, M) @ (M, N) = dW^T
    return _mm_t(dy.t(), x.t())  # (N, M) @ (M, K)


_EXP_FLOOR = -87.0  # exp() of anything lower is subnormal or 0, and ~10-40x slower on CPU: clamp to it first
_WEIGHTS = {"mode": "auto", "budget": 64 << 20}


def set_attention_weights(mode: str = "auto", budget_bytes: int = 64 << 20) -> None:
    """What ``CPUAttention`` keeps for backward (process-wide).

    "recompute": the output and log-sum-exp only; backward recomputes the weights chunk by chunk (the least
    memory). "keep": the (B, H, Tq, Tk) weights in the input dtype, and the backward skips the recomputation.
    "auto" (default): keep them under autocast (bf16 weights, half of fp32's bytes) when one call's weights
    fit ``budget_bytes``, else recompute.
    """
    if mode not in ("auto", "keep", "recompute"):
        raise ValueError(f"attention weights mode {mode!r}: use 'auto', 'keep' or 'recompute'")
    _WEIGHTS.update(mode=mode, budget=int(budget_bytes))


def _keeps_weights(q: Tensor, Tk: int) -> bool:
    if _WEIGHTS["mode"] != "auto":
        return _WEIGHTS["mode"] == "keep"
    B, H, Tq, _ = q.shape
    return q.dtype != torch.float32 and B * H * Tq * Tk * q.element_size() <= _WEIGHTS["budget"]


def _chunk_heads(B: int, H: int, Tq: int, Tk: int) -> int:
    """(batch, head) pairs per chunk, ~1M weights (4 MiB fp32, in cache and under malloc's mmap threshold):
    a divisor of H (part of one row), or whole rows when a row's weights are small."""
    c = max(1, (1 << 20) // (Tq * Tk))
    return H * min(B, c // H) if c >= H else next(d for d in range(c, 0, -1) if H % d == 0)


def _mask_chunk(mask: Tensor, i: int, c: int) -> Tensor:
    """Pairs i .. i + c of ``mask`` expanded to (B, H, Tq, Tk): a view (c, Tq, Tk)."""
    B, H, Tq, Tk = mask.shape
    b, h = divmod(i, H)
    return mask[b, h: h + c] if c <= H else mask[b: b + c // H].reshape(-1, Tq, Tk)


class CPUAttention(torch.autograd.Function):
    """softmax(q k^T + mask) v on CPU, with the gradient of the relative bias inside ``mask`` (scale 1, T5's).

    PyTorch's fused CPU (flash) kernel takes an additive mask but gives it no gradient, so sdpa with T5's
    learned bias runs its math path, which stores (B, H, Tq, Tk) fp32 weights per layer for backward; and its
    flash backward measured slower than the one here even without a bias (cross-attention). Two forwards:

    - recompute (fp32, or weights over budget): the flash kernel, which keeps only the output and the
      log-sum-exp (B, H, Tq); the backward recomputes the weights in cache-sized chunks;
    - keep (autocast): the weights computed chunk by chunk in fp32 and kept in bf16, which the backward's
      products use anyway; it then skips the recomputation (~40% of it). ``set_attention_weights`` chooses.
      Attention-weight dropout (``dropout_p``) always takes this path and keeps its mask too (bool): still
      less than sdpa's math path, which it replaces, keeps.

    The backward (``_attention_backward``), per chunk:

        P = exp(q k^T + mask - lse)    dv = P^T dO    dS = P * (dO v^T - rowsum(dO * O))
        dq = dS k                      dk = dS^T q    dbias = dS, summed over the batch if bias has one row

    mask (B|1, H|1, Tq, Tk) is ``bias`` (or zeros) with the disallowed positions at the most negative value,
    detached: there P is 0 (or below 1e-37, see _EXP_FLOOR), so dS is 0 and the bias gets no gradient, as
    masked_fill's backward would give it. bias (B|1, H, Tq, Tk) or None (cross-attention) only receives the
    gradient.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, bias, dropout_p=0.0):
        ctx.bias_rows, ctx.dropout_p = 0 if bias is None else bias.shape[0], dropout_p
        ctx.kept = dropout_p > 0.0 or _keeps_weights(q, k.shape[2]) or not _FLASH
        if ctx.kept:
            out, weights, keep = _attention_forward_keeping_weights(q, k, v, mask, dropout_p)
            ctx.n_chunks = len(weights)
            ctx.save_for_backward(q, k, v, out, *weights, *keep)
        else:
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False,
                                                                                  attn_mask=mask, scale=1.0)
            ctx.save_for_backward(q, k, v, out, mask, lse)
        return out

    @staticmethod
    def backward(ctx, d_out):
        q, k, v, out, *rest = ctx.saved_tensors
        if ctx.kept:
            mask, lse, weights, keep = None, None, rest[:ctx.n_chunks], rest[ctx.n_chunks:] or None
        else:
            (mask, lse), weights, keep = rest, None, None
        with torch.autocast("cpu", enabled=False):  # torch.compile traces backward under forward's autocast
            grads = _attention_backward(d_out, q, k, v, out, mask, lse, weights, keep, ctx.dropout_p,
                                        ctx.bias_rows)
        return *grads, None


def _attention_forward_keeping_weights(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float = 0.0
                                       ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """-> output (B, H, Tq, dk); the weights P as one (c, Tq, Tk) tensor per chunk of c (batch, head) pairs,
    in q's dtype; with dropout, the kept positions per chunk (bool; the output is (P * keep / (1 - p)) v).

    Scores and softmax in fp32. Chunks, not one (B*H, Tq, Tk) tensor: each stays under malloc's mmap
    threshold, so the next step reuses its memory instead of page-faulting a fresh mapping."""
    B, H, Tq, dk = q.shape
    Tk = k.shape[2]
    qf, kf = (t.to(torch.float32).reshape(B * H, -1, dk) for t in (q, k))
    vl = v.reshape(B * H, Tk, dk)
    mask = mask.expand(B, H, Tq, Tk)
    out = torch.empty(B * H, Tq, dk, dtype=q.dtype, device=q.device)
    weights, keep = [], []
    rng = _dropout_generator() if dropout_p > 0.0 else None
    c = _chunk_heads(B, H, Tq, Tk)
    for i in range(0, B * H, c):
        r = slice(i, i + c)
        s = torch.baddbmm(_mask_chunk(mask, i, c), qf[r], kf[r].transpose(1, 2))  # (c, Tq, Tk) fp32
        # One fused kernel (max, exp, sum, divide): 0.96 ms against 1.37 ms for the separate in-place ops per
        # chunk of 4 x 512 x 512, and no slow subnormal exp() to clamp away (RESULTS.md section 10).
        weights.append(torch.softmax(s, -1).to(q.dtype))
        if dropout_p > 0.0:
            keep.append(_dropout_keep(rng, s.shape, dropout_p))
        torch.bmm(_dropped(weights[-1], keep[-1], dropout_p) if keep else weights[-1], vl[r], out=out[r])
    return out.view(B, H, Tq, dk), weights, keep


def _dropout_generator():
    """A NumPy PCG64 generator seeded from torch's global generator (so ``torch.manual_seed`` and the
    per-step seeding of training decide the masks): 16 random bits per weight cost ~0.8 ns against
    ~2.7 ns for ``torch.rand``, whose CPU generator is serial and was most of what dropout added to a step."""
    import numpy as np

    return np.random.Generator(np.random.PCG64(int(torch.randint(0, 2**62, (1,)))))


def _dropout_keep(rng, shape: torch.Size, p: float) -> Tensor:
    """Which attention weights dropout keeps: each with probability 1 - p (p in steps of 1/65536)."""
    import numpy as np

    bits = rng.integers(-(2**15), 2**15, size=tuple(shape), dtype=np.int16)
    return torch.from_numpy(bits) >= round(p * 2**16) - 2**15


def _dropped(weights: Tensor, keep: Tensor, p: float) -> Tensor:
    return weights.masked_fill(~keep, 0).mul_(1.0 / (1.0 - p))


def _attention_backward(d_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, mask: Tensor | None,
                        lse: Tensor | None, weights: list[Tensor] | None, keep: list[Tensor] | None,
                        dropout_p: float, bias_rows: int) -> tuple[Tensor | None, ...]:
    """Gradients of ``CPUAttention``, c (batch, head) pairs at a time (``_chunk_heads``), from the kept
    ``weights`` or from weights recomputed per chunk from ``mask`` and ``lse`` (fp32 scores and softmax).

    The products with dO, P and dS take operands in the inputs' dtype (bf16 under autocast) with fp32
    accumulation, as FlashAttention's backward does; dS = P * (dO v^T - delta) is one baddbmm. With dropout
    (kept weights only): dv = (P * keep / (1 - p))^T dO and dS = P * ((dO v^T) * keep / (1 - p) - delta),
    where delta = rowsum(dO * O) still equals rowsum(P * dP) of the dropped weights.
    """
    B, H, Tq, dk = q.shape
    Tk = k.shape[2]
    f32, low = torch.float32, q.dtype  # low: the dtype of the products (fp32, or autocast's bf16)
    ql, kl, vl, gl = (t.reshape(B * H, -1, dk) for t in (q, k, v, d_out.to(low)))
    if weights is None:
        qf, kf = (t.to(f32).reshape(B * H, -1, dk) for t in (q, k))  # for the fp32 scores
        mask = mask.expand(B, H, Tq, Tk)  # a view: (B|1, H|1, ..) broadcasts
        lse = lse.reshape(B * H, Tq, 1)
    delta = (d_out.to(f32) * out.to(f32)).sum(-1, keepdim=True).reshape(B * H, Tq, 1).to(low)  # rowsum(dO * O)
    dq, dk_, dv = (torch.empty(B * H, n, dk, dtype=low, device=q.device) for n in (Tq, Tk, Tk))
    d_bias = torch.zeros(bias_rows * H, Tq, Tk, dtype=f32, device=q.device) if bias_rows else None
    c = _chunk_heads(B, H, Tq, Tk)
    for n, i in enumerate(range(0, B * H, c)):
        r = slice(i, i + c)
        if weights is not None:
            p = weights[n]
        else:  # P (c, Tq, Tk) in fp32, then rounded to ``low`` (a copy only under autocast)
            p = torch.baddbmm(_mask_chunk(mask, i, c), qf[r], kf[r].transpose(1, 2))
            p = p.sub_(lse[r]).clamp_min_(_EXP_FLOOR).exp_().to(low)
        if keep is None:
            torch.bmm(p.transpose(1, 2), gl[r], out=dv[r])
            ds = torch.baddbmm(delta[r], gl[r], vl[r].transpose(1, 2), beta=-1).mul_(p)  # dS (c, Tq, Tk), ``low``
        else:
            torch.bmm(_dropped(p, keep[n], dropout_p).transpose(1, 2), gl[r], out=dv[r])
            ds = _dropped(torch.bmm(gl[r], vl[r].transpose(1, 2)), keep[n], dropout_p).sub_(delta[r]).mul_(p)
        torch.bmm(ds, kl[r], out=dq[r])
        torch.bmm(ds.transpose(1, 2), ql[r], out=dk_[r])
        if bias_rows == B and B > 1:  # packed: a bias per row
            d_bias[r] = ds
        elif bias_rows:  # bias (1, H, ..): one row for the whole batch
            b, h = divmod(i, H)
            if c <= H:
                d_bias[h: h + c] += ds
            else:
                d_bias += ds.view(-1, H, Tq, Tk).sum(0)
    grads = (t.view(B, H, -1, dk) for t in (dq, dk_, dv))
    return *grads, None, None if d_bias is None else d_bias.view(bias_rows, H, Tq, Tk)


_ONEDNN = _onednn_ok()
# The fused CPU (flash) forward that CPUAttention's "recompute" path calls, a private op: without it every call
# keeps its weights instead (the "keep" path, all public ops; tested with this flag off).
_FLASH = hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
