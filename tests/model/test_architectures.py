"""The architecture registry: every registered spec's converter feeds its model, FLOPs keep their values, an
objective without inputs works with every architecture, and the specs agree with their model classes."""

import numpy as np
import pytest
import torch

from t5lit.config import ARCHITECTURES, preset_config
from t5lit.features import converter_for
from t5lit.lit_module import weighted_cross_entropy
from t5lit.model import cpu
from t5lit.model.architectures import build_model

V = 1152  # the tiny preset's vocabulary


def examples(n: int, seed: int = 0, no_inputs: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)

    def ids(k):
        return np.append(rng.integers(3, V - 100, k - 1), 1).astype(np.int32)  # ends in EOS

    return [{"inputs": np.zeros(0, np.int32) if no_inputs else ids(int(rng.integers(2, 7))),
             "targets": ids(int(rng.integers(2, 5)))} for _ in range(n)]


def as_torch(features: dict) -> dict:
    return {k: torch.from_numpy(v) for k, v in features.items()}


def train_step(model, batch: dict) -> tuple[torch.Tensor, dict]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = weighted_cross_entropy(model(batch), batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_registry_order_and_specs_agree_with_their_models():
    assert list(ARCHITECTURES)[:3] == ["encoder_decoder", "decoder_only", "prefix_lm"]  # t5lit list order
    for name in ARCHITECTURES:
        spec = ARCHITECTURES.get(name)
        assert spec.name == name == spec.model.arch
        assert spec.description and "\n" not in spec.description
        cfg = preset_config("tiny", arch=name)
        assert cfg.spec is spec and (cfg.num_encoder_layers > 0) == spec.has_encoder
        model = build_model(cfg)
        assert type(model) is spec.model
        assert hasattr(model, "encoder") == spec.has_encoder == ("encoder_input_tokens" in model.required)
        assert (spec.hf_class is None) == bool(spec.no_hf_reason)
    assert ARCHITECTURES.get("encoder_decoder").hf_class == "T5ForConditionalGeneration"


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_converter_feeds_its_model(arch, pack):
    features = converter_for(arch, 8, 6, pack=pack)(examples(4))
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", arch=arch))
    loss, grads = train_step(model, as_torch(features))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_an_objective_without_inputs_trains_every_architecture(arch, pack, fast):
    """The lm objective gives inputs []: the encoder-decoder still gets one encoder position, all padding,
    and a training step stays finite (fully masked encoder rows and cross-attention rows)."""
    features = converter_for(arch, 0, 6, pack=pack)(examples(3, no_inputs=True))
    if ARCHITECTURES.get(arch).has_encoder:
        assert features["encoder_input_tokens"].shape[1] == 1 and not features["encoder_input_tokens"].any()
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", arch=arch))
    if fast:
        cpu.apply_cpu_fast_paths(model)
    loss, grads = train_step(model, as_torch(features))
    assert torch.isfinite(loss) and loss > 0
    assert grads and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("preset, arch, changes, enc_len, dec_len, flops", [
    # values of the formula the callbacks held before the specs (t5lit.callbacks.train_flops_per_example)
    ("t5-base", "encoder_decoder", {}, 512, 114, 425944203264.0),
    ("t5.1.1-small", "encoder_decoder", {}, 512, 114, 106253402112.0),
    ("t5-base", "decoder_only", {}, 0, 626, 455029604352.0),
    ("t5-small", "prefix_lm", {}, 0, 626, 147122700288.0),
    ("tiny", "encoder_decoder", {"share_encoder_decoder": True}, 7, 5, 2664192.0),
])
def test_train_flops_keep_their_values(preset, arch, changes, enc_len, dec_len, flops):
    cfg = preset_config(preset, arch=arch, **changes)
    assert cfg.spec.train_flops(cfg, enc_len, dec_len) == flops
