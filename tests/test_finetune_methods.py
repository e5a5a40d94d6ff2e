"""Fine-tuning methods as stage settings (paper Section 3.5.1, Table 10), end to end: the keys and their one-line
errors, loading pre-trained weights into an adapter model (exactly the adapters may be missing), what a
stage with adapters trains, what ``t5lit check`` shows, and ``multiply`` (Table 13's relative rows)."""

from pathlib import Path

import pytest
import torch

from t5lit.checkpoint import load_weights
from t5lit.checks import check_experiment
from t5lit.config import preset_config
from t5lit.experiment import load_experiment, resolve_experiment
from t5lit.model.architectures import adapter_weight_names, build_model
from t5lit.pipeline import run_experiment
from t5lit.registry import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"


@pytest.mark.parametrize("overrides, message", [
    ({"finetune.method": "adapters"}, "override: finetune.method adapters needs adapter_dim, the inner width d of "
                                      "every adapter (the paper's 32, 128, 512 or 2048)"),
    ({"finetune.adapter_dim": 32}, "override: finetune.adapter_dim applies to method adapters, not full; set "
                                   "adapter_dim: null"),
    ({"finetune.method": "adapters", "finetune.adapter_dim": 0}, "override: finetune.adapter_dim must be an integer "
                                                                 ">= 1, got 0"),
    ({"finetune.method": "adapter"}, "override: finetune.method: unknown method 'adapter'; did you mean "
                                     "'adapters'? valid: full, adapters, gradual_unfreezing"),
])
def test_bad_method_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve_experiment(DEBUG, overrides)
    assert str(err.value) == message


def stages(*extra):
    return {"stages": [{"name": "pretrain", "kind": "pretrain"},
                       {"name": "first", "kind": "finetune", "task": "builtin_kind", "method": "adapters",
                        "adapter_dim": 8}, *extra]}


@pytest.mark.parametrize("overrides, message", [
    ({"model.overrides": {"adapter_dim": 8}}, "model.overrides.adapter_dim: adapters are a fine-tuning method (Table "
                                              "10); set finetune.method: adapters and finetune.adapter_dim instead"),
    (stages({"name": "then", "kind": "finetune", "task": "builtin_kind", "init": "first"}),
     "stage 'then': it starts from stage 'first', fine-tuned with adapters of width 8: set method: adapters and "
     "adapter_dim: 8"),
    (stages({"name": "then", "kind": "finetune", "task": "builtin_kind", "init": "first", "method": "adapters",
             "adapter_dim": 16}),
     "stage 'then': it starts from stage 'first', fine-tuned with adapters of width 8: set method: adapters and "
     "adapter_dim: 8"),
    ({"trainer.strategy": "fsdp_blocks"}, "stage 'pretrain': trainer.strategy fsdp_blocks needs pretrain.optimizer: "
                                          "adamw (Adafactor's factored statistics need whole weights, which a shard "
                                          "does not hold)"),
    ({"trainer.strategy": "fsdp_blocks", "pretrain.optimizer": "adamw", "finetune.optimizer": "adamw",
      "trainer.precision": "16-mixed"},
     "trainer.strategy fsdp_blocks takes trainer.precision 32-true, 32, bf16-mixed, bf16-true, 16-true; got "
     "'16-mixed'"),
    ({"trainer.strategy": "fsdp", "trainer.accelerator": "cpu"},
     "trainer.strategy 'fsdp' (Lightning's FSDP) needs a CUDA device; use trainer.strategy: fsdp_blocks, which "
     "shards on CPU too"),
])
def test_methods_and_sharding_that_do_not_fit_are_one_line_before_any_work(overrides, message, tmp_path):
    exp = resolve_experiment(DEBUG, overrides)
    with pytest.raises(ConfigError) as err:
        check_experiment(exp, tmp_path / "run")
    assert str(err.value) == message
    assert not (tmp_path / "run").exists()


def test_check_shows_what_trains(capsys):
    check_experiment(resolve_experiment(DEBUG, {"finetune.method": "adapters", "finetune.adapter_dim": 8}))
    check_experiment(resolve_experiment(DEBUG, {"finetune.method": "gradual_unfreezing"}))
    # tiny: 2 + 2 adapters of 2 x 32 x 8 weights; 12 layer norms of 32 (2 x 2 + 1, 2 x 3 + 1)
    assert capsys.readouterr().out.splitlines() == [
        "# stage 'builtin_kind': adapters of width 8 after every feed-forward network: 2,432 of 80,320 parameters "
        "train (3.03%)",
        "# stage 'builtin_kind': gradual unfreezing of 2 blocks per stack from the top, starting at steps 0, 3 of 6"]
    assert 2_432 == 4 * 2 * 32 * 8 + 12 * 32


def write_checkpoint(path: Path, model) -> Path:
    """A t5lit checkpoint holding ``model``'s weights (what ``trainer.save_checkpoint`` writes, minus the loops)."""
    torch.save({"hyper_parameters": {"model_config": model.cfg.to_dict()},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_an_adapter_model_loads_pre_trained_weights_and_keeps_fresh_adapters(tmp_path):
    torch.manual_seed(0)
    pre = build_model(preset_config("tiny"))
    ckpt = write_checkpoint(tmp_path / "pre.ckpt", pre)
    model = build_model(preset_config("tiny", adapter_dim=8))
    load_weights(model, ckpt)
    fresh = set(adapter_weight_names(model))
    for name, value in model.state_dict().items():
        if name in fresh:
            assert (not value.any()) == name.endswith("up.weight"), name  # the adapters keep their initialisation
        else:
            assert torch.equal(value, pre.state_dict()[name]), name


def test_only_the_adapters_may_be_missing(tmp_path):
    pre = build_model(preset_config("tiny"))
    weights = pre.state_dict()
    del weights["decoder.final_norm.weight"]
    torch.save({"hyper_parameters": {"model_config": pre.cfg.to_dict()},
                "state_dict": {f"model.{k}": v for k, v in weights.items()}}, tmp_path / "broken.ckpt")
    with pytest.raises(ConfigError, match=r"its weights do not fit its own model config .*decoder.final_norm.weight"):
        load_weights(build_model(preset_config("tiny", adapter_dim=8)), tmp_path / "broken.ckpt")
    adapted = write_checkpoint(tmp_path / "adapted.ckpt", build_model(preset_config("tiny", adapter_dim=8)))
    for dim, what in ((0, "without adapters"), (16, "adapter_dim 16")):
        with pytest.raises(ConfigError) as err:
            load_weights(build_model(preset_config("tiny", adapter_dim=dim)), adapted)
        assert str(err.value) == (f"{adapted} holds adapter layers of width 8 (fine-tuned with finetune.method: "
                                  f"adapters); start from it with method adapters and adapter_dim 8, not {what}")
    same = build_model(preset_config("tiny", adapter_dim=8))
    load_weights(same, adapted)  # a stage with adapters of the same width continues them, strictly
    saved = torch.load(adapted, weights_only=False)["state_dict"]
    assert torch.equal(same.state_dict()["encoder.layers.0.adapter.down.weight"],
                       saved["model.encoder.layers.0.adapter.down.weight"])


@pytest.mark.slow
def test_a_stage_with_adapters_moves_only_adapters_and_layer_norms(tmp_path):
    results = run_experiment(load_experiment(DEBUG, {"finetune.method": "adapters", "finetune.adapter_dim": 8}),
                             tmp_path)
    assert results["status"] == "complete"
    pre = torch.load(tmp_path / "pretrain/final.ckpt", weights_only=False)["state_dict"]
    tuned = torch.load(tmp_path / "finetune/builtin_kind/best-builtin_kind.ckpt", weights_only=False)
    assert tuned["hyper_parameters"]["model_config"]["adapter_dim"] == 8
    weights = tuned["state_dict"]
    for name, value in weights.items():
        if ".adapter." in name or "norm" in name:
            assert name in pre or ".adapter." in name
            assert name not in pre or not torch.equal(value, pre[name]), name  # trained
        else:
            assert torch.equal(value, pre[name]), name  # frozen for the whole stage
    assert sum(".adapter." in n for n in weights) == 2 * 4  # down and up in each of the 2 + 2 blocks


def test_multiply_scales_whatever_the_layers_below_set():
    rows = {"steps": {"pretrain.steps": 4, "finetune.steps": 4}, "batch": {"pretrain.batch_size": 4},
            "size": {"model.overrides.d_model": 1.3333333, "model.overrides.d_ff": 1.3333333,
                     "model.overrides.num_heads": 1.3333333, "model.depth_factor": 2.6666667}}
    paper = {k: resolve_experiment(REPO / "experiments/paper/baseline.yaml", {"multiply": v}) for k, v in rows.items()}
    assert (paper["steps"].pretrain.steps, paper["steps"].finetune.steps) == (2**21, 2**20)
    assert paper["batch"].pretrain.batch_size == 512
    cfg = paper["size"].model.config()  # Table 13's 4x model: BERT-large's shape, 32 blocks per stack
    assert (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv, cfg.num_encoder_layers, cfg.num_decoder_layers) == (
        1024, 4096, 16, 64, 32, 32)
    tiny = resolve_experiment(DEBUG, {"multiply": rows["steps"]})  # relative to the tiny scale's 6 steps
    assert (tiny.pretrain.steps, tiny.finetune.steps) == (24, 24)
    with pytest.raises(ConfigError, match=r"^override multiply 'pretrain.stepz': unknown key 'stepz' under "
                                          r"'pretrain'; did you mean 'steps'\?"):
        load_experiment(DEBUG, {"multiply": {"pretrain.stepz": 4}})
    with pytest.raises(ConfigError, match=r"^override multiply 'model.vocab': its value 'builtin' is not a number$"):
        load_experiment(DEBUG, {"multiply": {"model.vocab": 4}})
