"""``model.init_from``: the first training stage starts from a Hugging Face T5 (a directory written by transformers
or by ``t5lit export-hf``, or a hub name), checked before any work."""

from pathlib import Path

import pytest
import torch

from t5lit.checks import check_experiment
from t5lit.experiment import resolve_experiment
from t5lit.registry import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "experiments" / "debug_run.yaml"
TINY = dict(vocab_size=1152, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2, num_decoder_layers=2,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
            feed_forward_proj="relu", tie_word_embeddings=True)


def hf_tiny(path: Path, **changes) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    T5ForConditionalGeneration(T5Config(**{**TINY, **changes})).save_pretrained(path)
    return path


def module_for(exp):
    from t5lit.pipeline import _module

    stage = exp.plan()[0]
    return _module(exp, stage, None), stage


def test_fine_tuning_starts_from_a_directory_written_by_transformers(tmp_path):
    from t5lit.checkpoint import load_hf

    path = hf_tiny(tmp_path / "hf")
    exp = resolve_experiment(DEBUG, {"model.init_from": str(path), "pretrain": None})
    check_experiment(exp)
    module, stage = module_for(exp)
    assert stage.kind == "finetune" and stage.init is None
    expected, _ = load_hf(path)
    got = module.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.state_dict().items())
    # continuing pre-training: the pre-training stage starts from it, fine-tuning from pre-training
    exp = resolve_experiment(DEBUG, {"model.init_from": str(path)})
    module, stage = module_for(exp)
    assert stage.kind == "pretrain" and torch.equal(module.model.state_dict()["embed.weight"],
                                                    expected.state_dict()["embed.weight"])
    # a stage that asks for fresh weights gets them
    exp = resolve_experiment(DEBUG, {"model.init_from": str(path), "pretrain": None, "stages": [
        {"name": "fresh", "kind": "finetune", "task": "builtin_kind", "init": "random"}]})
    module, _ = module_for(exp)
    assert not torch.equal(module.model.state_dict()["embed.weight"], expected.state_dict()["embed.weight"])


def test_a_directory_written_by_t5lit_export_hf(tmp_path):
    from t5lit.cli import main
    from t5lit.config import preset_config
    from t5lit.model.architectures import build_model

    cfg = preset_config("tiny", dropout_rate=0.0)
    torch.manual_seed(1)
    model = build_model(cfg)
    ckpt = tmp_path / "run.ckpt"
    torch.save({"hyper_parameters": {"model_config": cfg.to_dict()},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    main(["export-hf", str(ckpt), str(tmp_path / "exported"), "--vocab", "builtin"])
    exp = resolve_experiment(DEBUG, {"model.init_from": str(tmp_path / "exported"), "pretrain": None})
    check_experiment(exp)
    module, _ = module_for(exp)
    got = module.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_a_run_fine_tunes_a_hugging_face_t5(tmp_path):
    from t5lit.pipeline import run_experiment

    path = hf_tiny(tmp_path / "hf")
    exp = resolve_experiment(DEBUG, {"model.init_from": str(path), "pretrain": None, "finetune.steps": 2,
                                     "finetune.eval_every": 2})
    assert run_experiment(exp, tmp_path / "run")["status"] == "complete"


def test_bad_init_from_is_one_line_before_any_work(tmp_path, monkeypatch):
    other = hf_tiny(tmp_path / "other", d_ff=128, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    exp = resolve_experiment(DEBUG, {"model.init_from": str(other), "pretrain": None})
    with pytest.raises(ConfigError) as err:
        check_experiment(exp, tmp_path / "run")
    message = str(err.value)
    assert message.startswith(f"model.init_from {other}: its config does not fit the model (preset tiny): d_ff 128")
    assert "ffn gated-gelu" in message and "\n" not in message and not (tmp_path / "run").exists()
    base = resolve_experiment(REPO / "experiments" / "paper" / "baseline.yaml",
                              {"model.init_from": str(hf_tiny(tmp_path / "t", **{"vocab_size": 32128, "d_model": 768,
                                                                                  "d_kv": 64, "d_ff": 2048,
                                                                                  "num_heads": 12, "num_layers": 1,
                                                                                  "num_decoder_layers": 1}))})
    from t5lit.checkpoint import check_hf_init

    with pytest.raises(ConfigError, match="num_encoder_layers 1"):
        check_hf_init(base.model.init_from, base.model.config(), base.model.preset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a Hugging Face model directory \\(no config.json\\)"):
        check_hf_init(str(tmp_path / "empty"), base.model.config())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        check_hf_init("google-t5/t5-base", base.model.config())
    message = str(err.value)
    assert message.startswith("model.init_from 'google-t5/t5-base': not a local directory, and the Hugging Face hub "
                              "cannot be reached for it") and "t5lit export-hf" in message and "\n" not in message
    with pytest.raises(ConfigError, match="init_from loads a Hugging Face T5, an encoder_decoder; arch is prefix_lm"):
        resolve_experiment(DEBUG, {"model.init_from": str(other), "model.arch": "prefix_lm"})
