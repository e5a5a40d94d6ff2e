"""Parity with transformers' T5: weights imported from, and exported to, T5ForConditionalGeneration give the
same logits (fp32, tiny random models built locally, no download)."""

import pytest
import torch
import transformers

from t5lit.checkpoint import export_hf, export_lightning_checkpoint, import_hf
from t5lit.config import ModelConfig, preset_config
from t5lit.model.architectures import build_model
from t5lit.model.hf import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf
from t5lit.registry import ConfigError

V = 256
LAYOUTS = {  # T5 1.0: relu, tied (rescaled head); T5 1.1: gated-gelu, untied
    "t5.1.0": dict(ffn="relu", tie_word_embeddings=True),
    "t5.1.1": dict(ffn="gated-gelu", tie_word_embeddings=False),
}


def tiny_cfg(layout: str, **changes) -> ModelConfig:
    # 8 buckets / max distance 16 with sequences of 12 exercise both exact and logarithmic buckets.
    return preset_config("tiny", vocab_size=V, num_decoder_layers=2, **LAYOUTS[layout], **changes)


def tiny_hf(layout: str, seed: int = 0):
    """A random HF T5 whose norms and (for 1.1) head are perturbed, so a swapped weight cannot go unseen."""
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(config_to_hf(tiny_cfg(layout)))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        if layout == "t5.1.1":  # transformers 5 builds the head tied; give it its own weights as T5 1.1 has
            hf.lm_head.weight = torch.nn.Parameter(torch.randn(V, hf.config.d_model))
    return hf.eval()


def batch(seed: int = 1):
    """Encoder inputs (2, 12) with 4 trailing pads in row 1; decoder inputs (2, 7) starting with 0."""
    g = torch.Generator().manual_seed(seed)
    enc = torch.randint(3, V - 100, (2, 12), generator=g)
    enc[1, 8:] = 0
    enc[:, 7] = 1  # EOS: inside row 0, just before row 1's padding
    dec = torch.randint(3, V, (2, 7), generator=g)
    dec[:, 0] = 0
    return enc, dec


def ours_logits(model, enc, dec):
    with torch.no_grad():
        return model({"encoder_input_tokens": enc, "decoder_input_tokens": dec})  # (B, T, V)


def hf_logits(hf, enc, dec):
    with torch.no_grad():
        return hf(input_ids=enc, attention_mask=(enc != 0).long(), decoder_input_ids=dec).logits  # (B, T, V)


def random_ours(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_config_round_trip(layout):
    cfg = tiny_cfg(layout)
    hf_cfg = config_to_hf(cfg)
    assert hf_cfg.feed_forward_proj == cfg.ffn and hf_cfg.num_layers == 2 and hf_cfg.d_kv == 8
    assert config_from_hf(hf_cfg) == cfg
    # the rescaling survives config.json: transformers 5 stores it apart from tie_word_embeddings
    assert config_from_hf(transformers.T5Config.from_dict(hf_cfg.to_dict())) == cfg


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_import_matches_transformers_logits(layout, attention):
    hf = tiny_hf(layout)
    model, cfg = import_hf(hf, attention=attention)
    assert cfg == tiny_cfg(layout, attention=attention)
    enc, dec = batch()
    expected = hf_logits(hf, enc, dec)
    got = ours_logits(model, enc, dec)
    assert got.shape == expected.shape == (2, 7, V)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_import_from_directory(tmp_path):
    hf = tiny_hf("t5.1.1", seed=3)
    hf.save_pretrained(tmp_path)
    model, cfg = import_hf(tmp_path)
    assert not cfg.tie_word_embeddings and cfg.ffn == "gated-gelu"
    enc, dec = batch(seed=4)
    torch.testing.assert_close(ours_logits(model, enc, dec), hf_logits(hf, enc, dec), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_export_then_from_pretrained_gives_same_logits(layout, tmp_path):
    cfg = tiny_cfg(layout)
    model = random_ours(cfg)
    export_hf(model, cfg, tmp_path)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert hf.config.scale_decoder_outputs == cfg.tie_word_embeddings
    enc, dec = batch()
    torch.testing.assert_close(hf_logits(hf, enc, dec), ours_logits(model, enc, dec), atol=1e-4, rtol=1e-4)
    # and back again: the imported model holds exactly the exported weights
    back, back_cfg = import_hf(tmp_path)
    assert back_cfg == cfg
    for name, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_state_dict_round_trip_is_exact(layout):
    cfg = tiny_cfg(layout)
    sd = random_ours(cfg).state_dict()
    hf_sd = state_dict_to_hf(sd, cfg)
    assert hf_sd.keys() == tiny_hf(layout).state_dict().keys()
    back = state_dict_from_hf(hf_sd, cfg)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_lightning_checkpoint_export(tmp_path):
    cfg = tiny_cfg("t5.1.1")
    model = random_ours(cfg, seed=5)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"hyper_parameters": {"model_config": cfg.to_dict(), "lr": 0.01}, "epoch": 0,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    out = export_lightning_checkpoint(ckpt, tmp_path / "hf")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
    enc, dec = batch(seed=6)
    torch.testing.assert_close(hf_logits(hf, enc, dec), ours_logits(model, enc, dec), atol=1e-4, rtol=1e-4)


def test_lightning_checkpoint_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(ConfigError, match="nope.ckpt") as e:
        export_lightning_checkpoint(missing, tmp_path / "hf")
    assert "\n" not in str(e.value)
    bare = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, bare)
    with pytest.raises(ConfigError, match="bare.ckpt.*model_config") as e:
        export_lightning_checkpoint(bare, tmp_path / "hf")
    assert "\n" not in str(e.value)


def test_shared_encoder_decoder_exports_as_unshared_copy(tmp_path):
    cfg = tiny_cfg("t5.1.0", share_encoder_decoder=True)
    model = random_ours(cfg, seed=7)
    export_hf(model, cfg, tmp_path)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    enc_q = hf.encoder.block[1].layer[0].SelfAttention.q.weight
    dec_q = hf.decoder.block[1].layer[0].SelfAttention.q.weight
    assert torch.equal(enc_q, dec_q) and enc_q.data_ptr() != dec_q.data_ptr()
    enc, dec = batch(seed=8)
    torch.testing.assert_close(hf_logits(hf, enc, dec), ours_logits(model, enc, dec), atol=1e-4, rtol=1e-4)
    _, back_cfg = import_hf(hf)
    assert not back_cfg.share_encoder_decoder


@pytest.mark.parametrize("arch", ["decoder_only", "prefix_lm"])
def test_decoder_only_has_no_hf_equivalent(arch, tmp_path):
    cfg = preset_config("tiny", arch=arch)
    with pytest.raises(ConfigError, match=arch) as e:
        export_hf(build_model(cfg), cfg, tmp_path)
    assert "\n" not in str(e.value) and "encoder_decoder" in str(e.value)


def test_unsupported_or_mismatched_hf_weights_raise():
    hf_cfg = config_to_hf(tiny_cfg("t5.1.0"))
    hf_cfg.feed_forward_proj = "gated-silu"
    with pytest.raises(ConfigError, match="gated-silu"):
        config_from_hf(hf_cfg)
    cfg = tiny_cfg("t5.1.0")
    hf_sd = tiny_hf("t5.1.0").state_dict()
    with pytest.raises(ConfigError, match="unexpected"):
        state_dict_from_hf({**hf_sd, "encoder.block.9.layer.0.layer_norm.weight": torch.ones(32)}, cfg)
    with pytest.raises(ConfigError, match="final_layer_norm"):
        state_dict_from_hf({k: v for k, v in hf_sd.items() if "final_layer_norm" not in k}, cfg)
    # a tied config cannot hold a head that differs from the embedding
    with pytest.raises(ConfigError, match="lm_head"):
        state_dict_from_hf({**hf_sd, "lm_head.weight": torch.randn(V, 32)}, cfg)


def test_import_from_missing_directory_is_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="missing") as e:
        import_hf(tmp_path / "missing")
    assert "\n" not in str(e.value)
