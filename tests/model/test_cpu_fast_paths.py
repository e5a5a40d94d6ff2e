"""``apply_cpu_fast_paths``: the plain model calls its own modules and sdpa; the swap keeps weights, names and
sharing, changes nothing the second time, and the swapped model computes what the plain one does."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from t5lit.config import preset_config
from t5lit.lit_module import T5LitModule, weighted_cross_entropy
from t5lit.model import cpu
from t5lit.model.architectures import build_model
from t5lit.model.layers import Attention, TiedOutput

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")


def features(arch: str, B: int = 3, T: int = 10) -> dict:
    g = torch.Generator().manual_seed(1)
    f = {"decoder_input_tokens": torch.randint(3, 1000, (B, T), generator=g),
         "decoder_target_tokens": torch.randint(3, 1000, (B, T), generator=g), "decoder_loss_weights": torch.ones(B, T)}
    if arch == "encoder_decoder":
        f["encoder_input_tokens"] = torch.randint(3, 1000, (B, T + 2), generator=g)
        f["encoder_input_tokens"][1, -3:] = 0
    if arch == "prefix_lm":
        f["decoder_causal_attention"] = (torch.arange(T) < 4).int().expand(B, -1).clone()
    return f


def models(arch: str, **changes) -> tuple[nn.Module, nn.Module]:
    """(plain model, the same weights with the fast paths applied)."""
    torch.manual_seed(0)
    cfg = preset_config("tiny", arch=arch, **changes)
    plain, fast = build_model(cfg), build_model(cfg)
    fast.load_state_dict(plain.state_dict())
    return plain, cpu.apply_cpu_fast_paths(fast)


def loss_and_grads(model, f, bf16: bool = False):
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = weighted_cross_entropy(model(f), f["decoder_target_tokens"], f["decoder_loss_weights"])[0]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


@pytest.fixture
def cpu_attention_calls(monkeypatch):
    calls = []
    real = cpu.CPUAttention.apply
    monkeypatch.setattr(cpu.CPUAttention, "apply", lambda *a: calls.append(1) or real(*a))
    return calls


def attention_calls(model) -> int:
    """Attention calls of one forward: self-attention per layer, plus cross-attention per decoder layer."""
    return sum(len(m.layers) * (2 if m.cross_attention else 1) for m in model.modules() if hasattr(m, "layers"))


@pytest.mark.parametrize("layout", [{}, dict(ffn="gated-gelu", tie_word_embeddings=False)])
@pytest.mark.parametrize("arch", ARCHS)
def test_plain_model_calls_its_linears_and_sdpa(arch, layout, sdpa_calls, cpu_attention_calls):
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", arch=arch, **layout))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is nn.Linear for m in linears)
    called = {id(m): 0 for m in linears}
    for m in linears:
        m.register_forward_hook(lambda mod, args, out: called.__setitem__(id(mod), called[id(mod)] + 1))
    loss_and_grads(model, features(arch))  # training, grad mode: the plain model still takes sdpa
    assert all(n >= 1 for n in called.values())
    assert len(sdpa_calls) == attention_calls(model) and not cpu_attention_calls


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_paths_train_with_cpu_attention_and_infer_with_sdpa(arch, sdpa_calls, cpu_attention_calls):
    _, fast = models(arch)
    assert not any(type(m) is nn.Linear for m in fast.modules())
    assert all(isinstance(m, cpu.OneDNNLinear) for m in fast.modules() if isinstance(m, nn.Linear))
    assert isinstance(fast.tied_head, cpu.OneDNNTiedOutput) and fast.tied_head.embedding is fast.embed
    assert {m.kernel for m in fast.modules() if isinstance(m, Attention)} == {"cpu"}
    f = features(arch)
    loss_and_grads(fast, f)
    assert len(cpu_attention_calls) == attention_calls(fast) and not sdpa_calls
    with torch.no_grad():
        fast.eval()(f)
    assert len(sdpa_calls) == attention_calls(fast)


@pytest.mark.parametrize("layout", [{}, dict(ffn="gated-gelu", tie_word_embeddings=False),
                                    dict(share_encoder_decoder=True), dict(dropout_rate=0.0, attention="eager")])
@pytest.mark.parametrize("arch", ARCHS)
def test_fast_paths_match_the_plain_model_fp32(arch, layout):
    if "share_encoder_decoder" in layout and arch != "encoder_decoder":
        pytest.skip("sharing needs an encoder")
    plain, fast = models(arch, **layout)
    f = features(arch)
    want_loss, want = loss_and_grads(plain, f)
    got_loss, got = loss_and_grads(fast, f)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_paths_match_the_plain_model_bf16_autocast(arch):
    plain, fast = models(arch)
    f = features(arch)
    want_loss, want = loss_and_grads(plain, f, bf16=True)
    got_loss, got = loss_and_grads(fast, f, bf16=True)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-2, atol=1e-2)
    for name in want:  # both round their products to bf16, in different orders: compare directions
        cos = F.cosine_similarity(got[name].flatten(), want[name].flatten(), dim=0)
        assert cos > 0.99, f"{name}: cosine {cos:.4f}"


def test_swap_keeps_names_parameters_and_sharing():
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", share_encoder_decoder=True))
    before = model.state_dict(keep_vars=True)
    params = list(model.parameters())
    cpu.apply_cpu_fast_paths(model)
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)  # the same Parameters
    assert list(model.parameters()) == params
    for enc, dec in zip(model.encoder.layers, model.decoder.layers, strict=True):
        assert dec.self_attn is enc.self_attn and dec.ffn is enc.ffn
        assert isinstance(enc.self_attn.q, cpu.OneDNNLinear) and isinstance(enc.ffn.wi, cpu.OneDNNLinear)
    assert model.decoder.layers[0].cross_attn.q is not model.encoder.layers[0].self_attn.q


def test_applying_twice_changes_nothing():
    _, fast = models("encoder_decoder", tie_word_embeddings=False)
    modules = dict(fast.named_modules(remove_duplicate=False))
    kernels = [m.kernel for m in fast.modules() if isinstance(m, Attention)]
    cpu.apply_cpu_fast_paths(fast)
    again = dict(fast.named_modules(remove_duplicate=False))
    assert again.keys() == modules.keys() and all(again[k] is modules[k] for k in modules)
    assert [m.kernel for m in fast.modules() if isinstance(m, Attention)] == kernels


def test_eager_attention_is_left_alone_and_hooks_see_the_swapped_linears():
    _, fast = models("decoder_only", attention="eager")
    assert {m.kernel for m in fast.modules() if isinstance(m, Attention)} == {"eager"}
    seen = []
    fast.decoder.layers[0].ffn.wo.register_forward_hook(lambda *a: seen.append(1))
    fast(features("decoder_only"))
    assert seen == [1]


def test_tied_output_owns_no_parameter():
    model = build_model(preset_config("tiny"))
    assert isinstance(model.tied_head, TiedOutput) and not list(model.tied_head.parameters())
    assert "tied_head" not in "".join(model.state_dict())


@pytest.mark.parametrize("enabled", [True, False])
def test_lightning_module_applies_the_fast_paths_on_cpu(enabled):
    module = T5LitModule(preset="tiny", cpu_fast_paths=enabled)
    module.configure_model()  # no Trainer attached: the module's own device (CPU)
    swapped = all(isinstance(m, cpu.OneDNNLinear) for m in module.model.modules() if isinstance(m, nn.Linear))
    assert swapped == enabled
    assert {m.kernel for m in module.model.modules() if isinstance(m, Attention)} == {"cpu" if enabled else "sdpa"}


def test_packed_rows_with_fully_masked_queries_stay_finite_under_bf16_autocast():
    """Packed rows' padding in cross-attention has no key to look at: an fp32 mask value of -3.4e38 became -inf in
    the bf16 score matmul under autocast, and the row NaN (every packed bf16-mixed fine-tuning run diverged)."""
    import numpy as np

    from t5lit.features import converter_for, pad_rows
    from t5lit.lit_module import weighted_cross_entropy

    rng = np.random.default_rng(0)
    examples = [{"inputs": np.append(rng.integers(3, 900, n), 1).astype(np.int32),
                 "targets": np.append(rng.integers(3, 900, 2), 1).astype(np.int32)} for n in (20, 30, 9, 31)]
    feats = pad_rows(converter_for("encoder_decoder", 32, 8, pack=True)(examples), 4)
    batch = {k: torch.from_numpy(v).long() if v.dtype == np.int32 else torch.from_numpy(v) for k, v in feats.items()}
    losses = []
    for fast in (False, True):
        torch.manual_seed(0)
        model = build_model(preset_config("tiny")).train()
        if fast:
            cpu.apply_cpu_fast_paths(model)
        inputs = {k: v for k, v in batch.items() if k not in ("decoder_loss_weights", "decoder_target_tokens")}
        with torch.autocast("cpu", torch.bfloat16):
            logits = model(inputs)
        loss, _ = weighted_cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
        losses.append(float(loss))
    assert abs(losses[0] - losses[1]) < 0.05
