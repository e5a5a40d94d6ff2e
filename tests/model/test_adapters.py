"""Adapter layers (paper Section 3.5.1, Table 10): where they sit, that a fresh (zero) adapter leaves the model's
outputs unchanged, that only adapters and layer norms get gradients and move, parameter counts, and the
refusal to export an adapter model to transformers. Tiny fp32 models, CPU, deterministic."""

import pytest
import torch

from t5lit.config import preset_config
from t5lit.model.architectures import (
    adapter_weight_names,
    build_model,
    count_parameters,
    freeze_all_but_adapters,
    parameter_counts,
)
from t5lit.model.generate import generate
from t5lit.model.layers import Adapter, RMSNorm
from t5lit.optim import build_optimizer
from t5lit.registry import ConfigError

from .test_model import ARCHS, features

ADAPTER = 8


def pair(arch: str, **changes):
    """(model without adapters, the same weights with fresh adapters of width ADAPTER), both in eval mode."""
    torch.manual_seed(0)
    plain = build_model(preset_config("tiny", arch=arch, **changes)).eval()
    with torch.no_grad():  # non-trivial norms, as tests/model/test_model.py does
        for name, p in plain.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    adapted = build_model(preset_config("tiny", arch=arch, adapter_dim=ADAPTER, **changes)).eval()
    missing = adapted.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(adapter_weight_names(adapted))
    return plain, adapted


@pytest.mark.parametrize("arch", ARCHS)
def test_a_fresh_adapter_is_the_identity(arch):
    plain, adapted = pair(arch)
    f = features(arch)
    with torch.no_grad():
        assert torch.equal(plain(f), adapted(f))  # exactly: up starts at 0, so x + 0
    inputs = f.get("encoder_input_tokens", f["decoder_input_tokens"][:, 1:])
    assert torch.equal(generate(plain, inputs, max_new_tokens=5), generate(adapted, inputs, max_new_tokens=5))
    # ... because each adapter's up-projection is zero and its down-projection is not
    for module in adapted.modules():
        if isinstance(module, Adapter):
            assert not module.up.weight.any() and module.down.weight.std() > 0


def test_adapters_sit_after_every_feed_forward_network_inside_its_residual_branch():
    _, adapted = pair("encoder_decoder")
    blocks = [*adapted.encoder.layers, *adapted.decoder.layers]
    assert all(isinstance(b.adapter, Adapter) and b.adapter.down.out_features == ADAPTER for b in blocks)
    block = adapted.encoder.layers[0]
    with torch.no_grad():
        block.adapter.up.weight.normal_()
    x = torch.randn(2, 5, 32)
    seen = {}
    block.ffn.register_forward_hook(lambda m, i, o: seen.update(ffn=o))  # (a hook returning None)
    block.adapter.register_forward_hook(lambda m, i, o: seen.update(adapter=(i[0], o)))
    adapted.encoder(x, adapted.seq_info({"encoder_input_tokens": torch.ones(2, 5, dtype=torch.long)}, "encoder",
                                        mask_pad_tokens=True))
    adapter_in, adapter_out = seen["adapter"]
    assert torch.equal(adapter_in, seen["ffn"])  # the adapter reads the FFN's output
    down = block.adapter.down.weight
    assert torch.allclose(adapter_out, adapter_in + torch.relu(adapter_in @ down.T) @ block.adapter.up.weight.T)


def test_a_shared_encoder_decoder_shares_its_adapters():
    _, adapted = pair("encoder_decoder", share_encoder_decoder=True)
    for enc, dec in zip(adapted.encoder.layers, adapted.decoder.layers):
        assert dec.adapter is enc.adapter
    assert {n.split(".")[0] for n in adapter_weight_names(adapted)} == {"encoder", "decoder"}  # both names


@pytest.mark.parametrize("arch", ARCHS)
def test_only_adapters_and_layer_norms_get_gradients_and_move(arch):
    _, model = pair(arch)
    model.train()
    freeze_all_but_adapters(model)
    intended = {id(p) for m in model.modules() if isinstance(m, (Adapter, RMSNorm)) for p in m.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(model.parameters(), "adafactor", lr=0.01)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == intended
    f = features(arch)
    for _ in range(2):  # the first step moves only `up` (down's gradient is 0 through a zero up); the second both
        optimizer.zero_grad()
        model(f).float().logsumexp(-1).mean().backward()
        for name, p in model.named_parameters():
            assert (p.grad is not None) == (id(p) in intended), name
        optimizer.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (id(p) in intended), name
    assert "embed.weight" in before and torch.equal(model.embed.weight, before["embed.weight"])  # tied output


def test_freezing_a_model_without_adapters_is_refused():
    with pytest.raises(ConfigError, match="has no adapters"):
        freeze_all_but_adapters(build_model(preset_config("tiny")))


# t5-base (222,903,552 parameters) with adapters of width d after each of its 24 FFNs: 2 x 768 x d each; the
# trainable ones add the 62 layer norms (12 x 2 + 1 in the encoder, 12 x 3 + 1 in the decoder) of 768 weights.
@pytest.mark.parametrize("d, trainable, total", [
    (32, 1_227_264, 224_083_200), (128, 4_766_208, 227_622_144),
    (512, 18_921_984, 241_777_920), (2048, 75_545_088, 298_401_024)])
def test_parameter_counts_of_t5_base_with_adapters(d, trainable, total):
    with torch.device("meta"):
        base = count_parameters(build_model(preset_config("t5-base")))
        model = build_model(preset_config("t5-base", adapter_dim=d))
    freeze_all_but_adapters(model)
    assert base == 222_903_552 and parameter_counts(model) == (trainable, total)
    assert total - base == 24 * 2 * 768 * d and trainable - (total - base) == 62 * 768


def test_an_adapter_model_has_no_transformers_equivalent():
    pytest.importorskip("transformers")
    from t5lit.model.hf import config_to_hf

    with pytest.raises(ConfigError, match=r"^a model with adapter layers \(adapter_dim 8, Table 10\)"):
        config_to_hf(preset_config("tiny", adapter_dim=8))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_adapter_width_is_one_line(bad):
    with pytest.raises(ConfigError, match=r"^ModelConfig.adapter_dim must be an integer >= 0"):
        preset_config("tiny", adapter_dim=bad)
