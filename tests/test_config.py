import pytest

from t5lit.config import PRESETS, ModelConfig, preset_config
from t5lit.registry import ConfigError, Registry


def test_registry_duplicate_and_unknown():
    reg = Registry("thing")
    reg.add("span_corruption", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("span_corruption", 2)
    with pytest.raises(ConfigError) as err:
        reg.get("spn_corruption")
    msg = str(err.value)
    assert "did you mean 'span_corruption'" in msg and "valid: span_corruption" in msg and "\n" not in msg


@pytest.mark.parametrize("changes, fragment", [
    ({"arch": "encdec"}, "unknown arch 'encdec'"),
    ({"ffn": "swiglu"}, "unknown ffn 'swiglu'"),
    ({"attention": "flash"}, "unknown attention 'flash'"),
    ({"d_model": 0}, "ModelConfig.d_model must be a positive integer"),
    ({"num_heads": -1}, "ModelConfig.num_heads"),
    ({"dropout_rate": 1.5}, "ModelConfig.dropout_rate"),
    ({"vocab_size": 50}, "ModelConfig.vocab_size must be >= 103"),
    ({"num_encoder_layers": 0}, "num_encoder_layers must be >= 1 for arch='encoder_decoder'"),
    ({"share_encoder_decoder": True, "num_decoder_layers": 3}, "share_encoder_decoder needs num_encoder_layers"),
    ({"arch": "decoder_only"}, "num_encoder_layers must be 0 for arch='decoder_only'"),
    ({"arch": "prefix_lm", "num_encoder_layers": 0, "share_encoder_decoder": True}, "needs an encoder"),
])
def test_impossible_configs_fail_in_one_line(changes, fragment):
    with pytest.raises(ConfigError) as err:
        ModelConfig().replace(**changes)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_field_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'd_model'"):
        preset_config("t5-small", d_modle=3)


def test_presets_and_decoder_only_drop_the_encoder():
    assert {"tiny", "mini", "t5-small", "t5-base", "t5-large", "t5.1.1-small", "t5.1.1-base",
            "t5.1.1-large"} <= set(PRESETS.names())
    cfg = preset_config("t5-base", arch="prefix_lm")
    assert cfg.num_encoder_layers == 0 and cfg.num_decoder_layers == 12
    assert preset_config("t5.1.1-base").ffn == "gated-gelu"
    assert not preset_config("t5.1.1-base").tie_word_embeddings
    cfg = preset_config("tiny")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_arch_spec_checks_its_fields():
    from t5lit.config import ARCHITECTURES, ArchSpec

    class Mine:
        arch = "mine"

    ok = dict(name="mine", model=Mine, has_encoder=False, converter=lambda *a, **kw: None,
              train_flops=lambda cfg, enc, dec: 0.0, description="one line", no_hf_reason="not a T5")
    assert ArchSpec(**ok).hf_class is None
    for changes, fragment in [({"name": "yours"}, "has arch='mine'; they must be equal"),
                              ({"no_hf_reason": ""}, "give no_hf_reason"),
                              ({"has_encoder": 1}, "has_encoder must be a bool"),
                              ({"description": "two\nlines"}, "one line each")]:
        with pytest.raises(ConfigError, match=fragment):
            ArchSpec(**{**ok, **changes})
    assert "mine" not in ARCHITECTURES  # a spec is registered only by register_architecture
    assert ModelConfig().spec is ARCHITECTURES.get("encoder_decoder") and ModelConfig().spec.has_encoder


@pytest.mark.parametrize("name, parameters", [
    # the released models' parameter counts (transformers' num_parameters of google-t5/t5-3b, google-t5/t5-11b,
    # google/t5-v1_1-xl, google/t5-v1_1-xxl)
    ("t5-3b", 2_851_598_336), ("t5-11b", 11_307_321_344), ("t5.1.1-xl", 2_849_757_184),
    ("t5.1.1-xxl", 11_135_332_352)])
def test_table_14_presets_have_the_released_models_sizes(name, parameters):
    import torch

    from t5lit.model.architectures import build_model, count_parameters

    with torch.device("meta"):  # no memory, no time
        assert count_parameters(build_model(preset_config(name))) == parameters
    cfg = preset_config(name)
    assert cfg.num_encoder_layers == cfg.num_decoder_layers == 24 and cfg.vocab_size == 32128
    assert (cfg.ffn, cfg.tie_word_embeddings) == (("gated-gelu", False) if "1.1" in name else ("relu", True))
