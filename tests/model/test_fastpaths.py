"""Every fast path against the eager reference: same losses and gradients within tolerance.

Fast paths: oneDNN fp32 linear and the CPU attention (flash forward or kept weights, chunked backward with
the bias gradient) in t5lit/model/cpu.py, applied by ``apply_cpu_fast_paths``; the Toeplitz bias of
unpacked rows; bf16 autocast; torch.compile (slow); flex attention (its dense reference on CPU, the compiled
kernel on CUDA only). The reference is the eager backend with the CPU fast paths switched off: plain
F.linear, softmax(q k^T + bias) v in autograd.
"""

import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from t5lit.config import preset_config
from t5lit.lit_module import weighted_cross_entropy
from t5lit.model import cpu
from t5lit.model.architectures import build_model
from t5lit.model.cpu_caps import CpuCaps
from t5lit.model.layers import RelativePositionBias

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")


@pytest.fixture
def reference_mode():
    """Runs a block with the CPU fast paths off; always switches them back on."""

    class _Off:
        def __enter__(self):
            cpu.set_fast_paths(False)

        def __exit__(self, *exc):
            cpu.set_fast_paths(True)

    yield _Off()
    cpu.set_fast_paths(True)


def batch(arch: str, packed: bool, B: int = 3, T: int = 12) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Features (encoder row 1 ends in padding; packed: two segments and padding), targets, weights."""
    g = torch.Generator().manual_seed(1)
    f = {"decoder_input_tokens": torch.randint(3, 1000, (B, T), generator=g)}
    targets = torch.randint(3, 1000, (B, T), generator=g)
    if arch == "encoder_decoder":
        enc = torch.randint(3, 1000, (B, T + 3), generator=g)
        enc[1, -4:] = 0
        f["encoder_input_tokens"] = enc
    if arch == "prefix_lm":
        f["decoder_causal_attention"] = (torch.arange(T) < 5).int().expand(B, -1).clone()
    if packed:
        f["decoder_segment_ids"] = torch.tensor([[1] * 6 + [2] * 6, [1] * 12, [1] * 4 + [2] * 5 + [0] * 3])
        f["decoder_positions"] = torch.tensor([list(range(6)) * 2, list(range(12)),
                                               [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 0, 0]])
        if arch == "encoder_decoder":
            f["encoder_input_tokens"][1, -4:] = 5
            f["encoder_segment_ids"] = torch.tensor([[1] * 7 + [2] * 8, [1] * 15, [1] * 5 + [2] * 6 + [0] * 4])
            f["encoder_positions"] = torch.tensor([list(range(7)) + list(range(8)), list(range(15)),
                                                   list(range(5)) + list(range(6)) + [0] * 4])
    weights = torch.ones(B, T)
    if packed:
        weights[2, -3:] = 0  # packing padding carries no loss
    return f, targets, weights


def loss_and_grads(model, f, targets, weights, dtype=None):
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        loss = weighted_cross_entropy(model(f), targets, weights)[0]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def pair(arch: str, paths: str = "all", **changes):
    """(reference eager model, fast model: ``cfg.attention`` with the CPU fast paths ``paths`` applied (a
    ``plan_fast_paths`` request), same weights."""
    torch.manual_seed(0)
    cfg = preset_config("tiny", arch=arch, **changes)
    ref = build_model(cfg.replace(attention="eager"))
    fast = build_model(cfg)
    fast.load_state_dict(ref.state_dict())
    return ref, cpu.apply_cpu_fast_paths(fast, cpu.plan_fast_paths(request=paths))


def assert_matches_reference(ref, fast, arch: str, packed: bool, reference_mode):
    """One fp32 training step's loss and gradients of ``fast`` equal the eager reference's (``ref``, the fast
    paths off), on ``batch(arch, packed)``."""
    f, targets, weights = batch(arch, packed)
    with reference_mode:
        want_loss, want = loss_and_grads(ref, f, targets, weights)
    got_loss, got = loss_and_grads(fast, f, targets, weights)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    assert_grads_close(got, want, rtol=1e-4, atol=1e-6)


def assert_grads_close(got: dict, want: dict, rtol: float, atol: float):
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("paths", ["all", *cpu.FAST_PATHS])  # each alone: the others forced off in turn
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("packed", [False, True])
def test_fast_paths_match_eager_reference(arch, packed, paths, reference_mode):
    ref, fast = pair(arch, paths)
    assert_matches_reference(ref, fast, arch, packed, reference_mode)


@pytest.mark.parametrize("layout", [dict(ffn="gated-gelu", tie_word_embeddings=False),
                                    dict(share_encoder_decoder=True)])
def test_fast_paths_match_for_t5_1_1_and_shared_layouts(layout, reference_mode):
    ref, fast = pair("encoder_decoder", **layout)
    assert_matches_reference(ref, fast, "encoder_decoder", False, reference_mode)


def test_onednn_linear_matches_f_linear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    dy = torch.randn(2, 5, 24, generator=g)
    y = cpu.linear(x, w)
    y.backward(dy)
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.linear(x, w).backward(dy)
    torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, w.grad, rtol=1e-5, atol=1e-5)


@pytest.fixture
def weights_mode():
    """Sets what CPUAttention keeps for backward; always restores "auto"."""
    yield cpu.set_attention_weights
    cpu.set_attention_weights("auto")


def attention_inputs(B: int, H: int, Tq: int, Tk: int, bias_rows: int):
    """q, k, v (leaves), the bias (B|1, H, Tq, Tk) or None, the additive mask (a third of the keys masked,
    never the first), the output gradient."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, n, 8, generator=g, requires_grad=True) for n in (Tq, Tk, Tk))
    allowed = torch.rand(B, 1, Tq, Tk, generator=g) > 0.3
    allowed[..., 0] = True
    bias = torch.randn(bias_rows, H, Tq, Tk, generator=g, requires_grad=True) if bias_rows else None
    base = torch.zeros(1, 1, Tq, Tk) if bias is None else bias
    mask = base.masked_fill(~allowed, torch.finfo(torch.float32).min)  # (B, H|1, Tq, Tk)
    return q, k, v, bias, mask, torch.randn(B, H, Tq, 8, generator=g)


@pytest.mark.parametrize("mode", ["recompute", "keep"])
@pytest.mark.parametrize("B, H, Tq, Tk, bias_rows",
                         [(3, 4, 7, 7, 1), (2, 4, 5, 9, 0), (3, 2, 6, 6, 3), (2, 8, 300, 300, 1)])
def test_cpu_attention_matches_math(B, H, Tq, Tk, bias_rows, mode, weights_mode):
    """Both backward sources (recomputed or kept weights); also the chunking: 300 x 300 weights make chunks
    of fewer heads than a row has."""
    weights_mode(mode)
    q, k, v, bias, mask, dy = attention_inputs(B, H, Tq, Tk, bias_rows)
    out = cpu.CPUAttention.apply(q, k, v, mask.detach(), bias)
    out.backward(dy)
    got = [t.grad.clone() for t in (q, k, v) + ((bias,) if bias is not None else ())]
    for t in (q, k, v) + ((bias,) if bias is not None else ()):
        t.grad = None
    want_out = torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v
    want_out.backward(dy)
    want = [t.grad for t in (q, k, v) + ((bias,) if bias is not None else ())]
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B, H, Tq, Tk, bias_rows", [(3, 4, 7, 7, 1), (2, 4, 5, 9, 0), (2, 8, 300, 300, 1)])
def test_cpu_attention_dropout_matches_math_with_the_same_mask(B, H, Tq, Tk, bias_rows, monkeypatch):
    """softmax(q k^T + mask) * keep / (1 - p) @ v in autograd, with the keep masks the fast path drew."""
    p = 0.25
    drawn = []
    draw = cpu._dropout_keep
    monkeypatch.setattr(cpu, "_dropout_keep", lambda *a: drawn.append(draw(*a)) or drawn[-1])
    q, k, v, bias, mask, dy = attention_inputs(B, H, Tq, Tk, bias_rows)
    leaves = (q, k, v) + ((bias,) if bias is not None else ())
    torch.manual_seed(0)  # the masks: the same whichever tests ran before in this process
    out = cpu.CPUAttention.apply(q, k, v, mask.detach(), bias, p)
    out.backward(dy)
    got = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    keep = torch.cat(drawn).view(B, H, Tq, Tk)
    assert 0.6 < keep.float().mean() < 0.9  # ~1 - p kept
    want_out = (torch.softmax(q @ k.transpose(-1, -2) + mask, -1) * keep / (1 - p)) @ v
    want_out.backward(dy)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, [t.grad for t in leaves], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_with_attention_dropout_takes_the_cpu_path_and_is_seeded(monkeypatch):
    calls = []
    draw = cpu._dropout_keep
    monkeypatch.setattr(cpu, "_dropout_keep", lambda rng, shape, p: calls.append(p) or draw(rng, shape, p))
    _, fast = pair("encoder_decoder", dropout_rate=0.1)
    f, targets, weights = batch("encoder_decoder", packed=True)
    torch.manual_seed(3)
    loss_a, grads_a = loss_and_grads(fast, f, targets, weights)
    assert calls and set(calls) == {0.1}
    torch.manual_seed(3)
    loss_b, grads_b = loss_and_grads(fast, f, targets, weights)
    torch.manual_seed(4)
    loss_c, _ = loss_and_grads(fast, f, targets, weights)
    assert torch.equal(loss_a, loss_b) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    assert not torch.equal(loss_a, loss_c)


def test_dropout_keep_rate_and_seeding():
    torch.manual_seed(0)
    a = cpu._dropout_keep(cpu._dropout_generator(), (64, 128, 128), 0.1)
    assert a.dtype == torch.bool and abs(a.float().mean().item() - 0.9) < 0.002
    assert cpu._dropout_keep(cpu._dropout_generator(), (2, 3), 0.0).all()
    torch.manual_seed(0)
    assert torch.equal(cpu._dropout_keep(cpu._dropout_generator(), (64, 128, 128), 0.1), a)
    assert not torch.equal(cpu._dropout_keep(cpu._dropout_generator(), (64, 128, 128), 0.1), a)


def test_attention_weights_mode_auto_keeps_bf16_within_budget(weights_mode):
    q32 = torch.zeros(2, 4, 64, 8)
    assert not cpu._keeps_weights(q32, 64)  # fp32: recompute (the least memory)
    assert cpu._keeps_weights(q32.bfloat16(), 64)  # 2*4*64*64 bf16 weights: 64 KiB
    weights_mode("auto", budget_bytes=1024)
    assert not cpu._keeps_weights(q32.bfloat16(), 64)
    weights_mode("keep")
    assert cpu._keeps_weights(q32, 64)
    with pytest.raises(ValueError, match="use 'auto', 'keep' or 'recompute'"):
        cpu.set_attention_weights("always")


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("Tq, Tk", [(1, 1), (5, 5), (3, 9), (9, 3), (200, 200)])
def test_plain_bias_equals_the_general_lookup(bidirectional, Tq, Tk):
    torch.manual_seed(0)
    table = RelativePositionBias(32, 128, 4, bidirectional).double()  # float64: sums in any order agree
    general = table(torch.arange(Tq)[None], torch.arange(Tk)[None])
    plain = table.plain(Tq, Tk)
    assert torch.equal(plain, general)
    dy = torch.randn(general.shape, dtype=torch.float64)
    general.backward(dy)
    want = table.embedding.weight.grad.clone()
    table.embedding.weight.grad = None
    plain.backward(dy)
    torch.testing.assert_close(table.embedding.weight.grad, want, rtol=1e-9, atol=1e-9)


def test_fast_paths_keep_transformers_layout():
    _, fast = pair("encoder_decoder")
    names = set(fast.state_dict())
    for stack, kind in (("encoder", "self_attn"), ("decoder", "self_attn"), ("decoder", "cross_attn")):
        for p in "qkvo":
            assert f"{stack}.layers.0.{kind}.{p}.weight" in names


@pytest.mark.parametrize("paths", ["all", *cpu.FAST_PATHS])
@pytest.mark.parametrize("arch", ARCHS)
def test_each_fast_path_matches_the_reference_under_bf16_autocast(arch, paths, reference_mode):
    ref, fast = pair(arch, paths)
    f, targets, weights = batch(arch, packed=arch != "decoder_only")
    with reference_mode:
        want_loss, want = loss_and_grads(ref, f, targets, weights, dtype=torch.bfloat16)
    got_loss, got = loss_and_grads(fast, f, targets, weights, dtype=torch.bfloat16)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-2, atol=1e-2)
    for name in want:  # both round their products to bf16, in different orders: compare directions
        cos = F.cosine_similarity(got[name].flatten(), want[name].flatten(), dim=0)
        assert cos > 0.99, f"{name}: cosine {cos:.4f}"


# ---- the choice by CPU ------------------------------------------------------------------------------
def _caps(vendor: str, *flags: str) -> CpuCaps:
    return CpuCaps(f"a {vendor} CPU", frozenset(flags), None, vendor)


SAPPHIRE_RAPIDS = _caps("GenuineIntel", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
GENOA = _caps("AuthenticAMD", "avx2", "avx512f", "avx512_bf16")
ROME = _caps("AuthenticAMD", "avx2", "fma")
GRAVITON = _caps("unknown", "asimd", "bf16")


@pytest.mark.parametrize("caps, linear", [(SAPPHIRE_RAPIDS, False), (GENOA, True), (ROME, False),
                                          (GRAVITON, False)])
def test_auto_chooses_by_vendor_and_isa(caps, linear, monkeypatch):
    monkeypatch.setattr(cpu, "_ONEDNN", True)
    plan = cpu.plan_fast_paths(caps, request="auto")
    assert ("onednn_linear" in plan.enabled) is linear
    assert "cpu_attention" in plan.enabled  # on every CPU: the memory of sdpa's math path
    reason = dict(plan.reasons)["onednn_linear"]
    assert reason.startswith({SAPPHIRE_RAPIDS: "MKL runs its own", GENOA: "fp32 by oneDNN's AVX-512",
                              ROME: "no AVX-512", GRAVITON: "no AVX-512"}[caps])
    assert plan.describe().startswith(f"onednn_linear {'on' if linear else 'off'} (")


def test_requests_and_the_environment(monkeypatch):
    assert cpu.plan_fast_paths(GENOA, request="none").enabled == frozenset()
    assert cpu.plan_fast_paths(SAPPHIRE_RAPIDS, request="all").enabled == (
        set(cpu.FAST_PATHS) if cpu._ONEDNN else {"cpu_attention"})
    assert cpu.plan_fast_paths(GENOA, request="cpu_attention").enabled == {"cpu_attention"}
    assert cpu.plan_fast_paths(GENOA, request=" cpu_attention, ").enabled == {"cpu_attention"}
    monkeypatch.setenv(cpu.ENV, "none")
    assert cpu.plan_fast_paths(GENOA).enabled == frozenset()
    monkeypatch.delenv(cpu.ENV)
    assert cpu.plan_fast_paths(GENOA).enabled == cpu.plan_fast_paths(GENOA, request="auto").enabled
    for bad in ("fast", "auto,cpu_attention", "onednn"):
        with pytest.raises(ValueError, match="use auto, all, none or a comma-separated list of onednn_linear"):
            cpu.plan_fast_paths(GENOA, request=bad)


def test_auto_swaps_only_linears_wide_enough_to_gain(monkeypatch):
    """Below ONEDNN_MIN_WIDTH the oneDNN linear saves nothing; a request ("all", a list) swaps every one."""
    monkeypatch.setattr(cpu, "_ONEDNN", True)
    torch.manual_seed(0)
    cfg = preset_config("tiny", d_model=128, d_kv=32, num_heads=4, d_ff=64)  # attention 128 wide, the FFN not
    auto = cpu.apply_cpu_fast_paths(build_model(cfg), cpu.plan_fast_paths(GENOA, request="auto"))
    layer = auto.encoder.layers[0]
    assert isinstance(layer.self_attn.q, cpu.OneDNNLinear) and isinstance(auto.tied_head, cpu.OneDNNTiedOutput)
    assert type(layer.ffn.wi) is torch.nn.Linear and type(layer.ffn.wo) is torch.nn.Linear
    every = cpu.apply_cpu_fast_paths(build_model(cfg), cpu.plan_fast_paths(GENOA, request="all"))
    assert isinstance(every.encoder.layers[0].ffn.wi, cpu.OneDNNLinear)


def test_no_path_swaps_nothing():
    torch.manual_seed(0)
    model = build_model(preset_config("tiny"))
    kinds = [type(m) for m in model.modules()]
    cpu.apply_cpu_fast_paths(model, cpu.plan_fast_paths(request="none"))
    assert [type(m) for m in model.modules()] == kinds
    assert {m.kernel for m in model.modules() if hasattr(m, "kernel")} == {"sdpa"}


# ---- the private PyTorch ops' fallbacks -----------------------------------------------------------------
def test_without_the_onednn_op_linear_is_f_linear_and_the_plan_says_so(monkeypatch, reference_mode):
    monkeypatch.setattr(cpu, "_ONEDNN", False)
    plan = cpu.plan_fast_paths(GENOA, request="all")
    assert plan.enabled == {"cpu_attention"} and "no oneDNN linear op" in dict(plan.reasons)["onednn_linear"]
    calls = []
    monkeypatch.setattr(cpu, "_mm_t", lambda *a: calls.append(1))
    ref, fast = pair("encoder_decoder", "onednn_linear")  # swapped by request; each call falls back
    assert_matches_reference(ref, fast, "encoder_decoder", False, reference_mode)
    assert not calls


@pytest.mark.parametrize("arch", ARCHS)
def test_without_the_flash_op_cpu_attention_keeps_its_weights(arch, monkeypatch, reference_mode):
    monkeypatch.setattr(cpu, "_FLASH", False)
    flash = []
    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu",
                        lambda *a, **kw: flash.append(1), raising=False)
    ref, fast = pair(arch, "cpu_attention")
    assert_matches_reference(ref, fast, arch, True, reference_mode)
    assert not flash


@pytest.mark.parametrize("mode", ["auto", "recompute"])  # auto keeps the bf16 weights here
@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_autocast_is_close_to_fp32(arch, mode, weights_mode):
    _, fast = pair(arch)
    weights_mode(mode)
    f, targets, weights = batch(arch, packed=arch != "decoder_only")
    want_loss, want = loss_and_grads(fast, f, targets, weights)
    got_loss, got = loss_and_grads(fast, f, targets, weights, dtype=torch.bfloat16)
    torch.testing.assert_close(got_loss, want_loss, rtol=2e-2, atol=2e-2)
    for name in want:  # bf16 rounds every product: compare directions, not digits
        cos = F.cosine_similarity(got[name].flatten(), want[name].flatten(), dim=0)
        assert cos > 0.98, f"{name}: cosine {cos:.4f}"


@pytest.mark.slow
def test_compiled_model_matches_eager():
    _, fast = pair("encoder_decoder")
    f, targets, weights = batch("encoder_decoder", packed=False)
    want_loss, want = loss_and_grads(fast, f, targets, weights)
    compiled = torch.compile(fast)
    fast.zero_grad(set_to_none=True)
    loss = weighted_cross_entropy(compiled(f), targets, weights)[0]
    loss.backward()
    torch.testing.assert_close(loss.detach(), want_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close({n: p.grad for n, p in fast.named_parameters()}, want, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention needs CUDA")
@pytest.mark.parametrize("arch", ARCHS)
def test_flex_matches_eager_gradients_on_cuda(arch):
    ref, fast = pair(arch, attention="flex")
    ref, fast = ref.cuda(), fast.cuda()
    f, targets, weights = batch(arch, packed=True)
    f = {k: v.cuda() for k, v in f.items()}
    want_loss, want = loss_and_grads(ref, f, targets.cuda(), weights.cuda())
    got_loss, got = loss_and_grads(fast, f, targets.cuda(), weights.cuda())
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-4, atol=1e-4)
    assert_grads_close(got, want, rtol=1e-3, atol=1e-4)


_RSS_AFTER_FREE = """
import sys, torch
from t5lit.model.cpu import tune_allocator
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
applied = tune_allocator() if sys.argv[1] == "tune" else False
x = torch.ones(4 << 20)  # 16 MiB
before = rss()
del x
print(applied, before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="tune_allocator sets glibc's malloc")
@pytest.mark.parametrize("how", ["tune", "default", "tune-but-disabled"])
def test_tune_allocator_keeps_freed_memory_for_reuse(how):
    """Untuned, glibc maps a 16 MiB block and unmaps it on free (the next step page-faults it again); tuned,
    the block stays in the heap. Run in a child: the setting is process-wide."""
    env = dict(os.environ, T5LIT_TUNE_MALLOC="0" if how == "tune-but-disabled" else "1")
    out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, how.split("-")[0]], capture_output=True,
                         text=True, env=env, check=True).stdout.split()
    applied, returned_mib = out[0] == "True", int(out[1])
    assert applied == (how == "tune")
    assert (returned_mib < 4) if applied else (returned_mib >= 12)


@pytest.fixture
def flex_on_cpu(monkeypatch):
    """Lifts the CUDA-only guards (ours and FlexAttention's "no backward on CPU"): uncompiled, flex_attention
    is its dense reference implementation, which has a backward on any device. It checks our score_mod (the
    precomputed bias, shared or per row), the BlockMasks (causal, prefix, packed, padding) and the bias
    gradient that flows through score_mod; the compiled CUDA kernel itself needs a GPU (the test above)."""
    import torch.nn.attention.flex_attention as fa

    from t5lit.model import layers, stack

    monkeypatch.setattr(fa, "_validate_device", lambda *args: None)
    monkeypatch.setattr(layers, "check_flex_device", lambda x: None)
    monkeypatch.setattr(stack, "check_flex_device", lambda x: None)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_flex_path_matches_eager_gradients(arch, packed, flex_on_cpu):
    ref, flex = pair(arch, attention="flex")
    f, targets, weights = batch(arch, packed=packed)
    want_loss, want = loss_and_grads(ref, f, targets, weights)
    got_loss, got = loss_and_grads(flex, f, targets, weights)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(got, want, rtol=1e-4, atol=1e-5)
