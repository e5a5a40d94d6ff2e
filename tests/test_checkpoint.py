"""Checkpoint files: a trainer's checkpoint and a Hugging Face directory round-trip a tiny model's weights;
every file a user can get wrong is a one-line ConfigError."""

import lightning as L
import pytest
import torch

from t5lit.checkpoint import (
    load_hf,
    load_weights,
    model_config,
    model_weights,
    read_checkpoint,
    save_hf,
    save_trainer_checkpoint,
)
from t5lit.config import ModelConfig, preset_config
from t5lit.model.architectures import build_model
from t5lit.registry import ConfigError


def tiny(seed: int = 0, **changes):
    torch.manual_seed(seed)
    cfg = preset_config("tiny", **changes)
    return build_model(cfg), cfg


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def write_lightning_layout(path, model, cfg):
    """A checkpoint as Lightning lays out a T5LitModule's: weights under "model.", config in hyper_parameters."""
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model_config": cfg.to_dict(), "lr": 0.01}, "global_step": 3}, path)
    return path


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


class Wrapper(L.LightningModule):
    """The least LightningModule that holds a t5lit model as ``self.model`` with its config, like T5LitModule."""

    def __init__(self, model_config: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelConfig.from_dict(model_config))

    def training_step(self, batch, batch_idx):
        return sum(p.square().sum() for p in self.model.parameters()) * 1e-3

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader([0, 1])


def test_a_trainer_checkpoint_round_trips_the_weights_and_config(tmp_path):
    _, cfg = tiny()
    module = Wrapper(cfg.to_dict())
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    path = save_trainer_checkpoint(trainer, tmp_path / "run" / "final.ckpt")
    assert path == tmp_path / "run" / "final.ckpt" and sorted(p.name for p in path.parent.iterdir()) == ["final.ckpt"]
    ckpt = read_checkpoint(path)
    assert ckpt["global_step"] == 1 and ModelConfig.from_dict(model_config(ckpt)) == cfg
    assert same_weights(model_weights(ckpt), module.model.state_dict())
    fresh, _ = tiny(seed=1)
    load_weights(fresh, path)
    assert same_weights(fresh.state_dict(), module.model.state_dict())


def test_weights_are_read_from_lightnings_layout(tmp_path):
    model, cfg = tiny()
    path = write_lightning_layout(tmp_path / "a.ckpt", model, cfg)
    ckpt = read_checkpoint(path)
    assert model_config(ckpt) == cfg.to_dict()
    assert same_weights(model_weights(ckpt), model.state_dict())
    compiled = {"state_dict": {f"model._orig_mod.{k}": v for k, v in model.state_dict().items()} | {"step": 1}}
    assert same_weights(model_weights(compiled), model.state_dict())  # torch.compile's prefix goes too


def test_a_hugging_face_directory_round_trips_the_weights(tmp_path):
    model, cfg = tiny(ffn="gated-gelu", tie_word_embeddings=False)
    ckpt = read_checkpoint(write_lightning_layout(tmp_path / "a.ckpt", model, cfg))
    out = save_hf(model_weights(ckpt), model_config(ckpt), tmp_path / "hf")
    assert (out / "config.json").is_file()
    back, back_cfg = load_hf(out)
    assert back_cfg.ffn == "gated-gelu" and not back_cfg.tie_word_embeddings
    assert same_weights(back.state_dict(), model.state_dict())


def test_a_missing_file_is_one_line(tmp_path):
    one_line_error(read_checkpoint, tmp_path / "nope.ckpt", match="checkpoint not found: .*nope.ckpt")
    one_line_error(read_checkpoint, tmp_path, match="is a directory")


def test_a_truncated_file_is_one_line(tmp_path):
    model, cfg = tiny()
    path = write_lightning_layout(tmp_path / "a.ckpt", model, cfg)
    path.write_bytes(path.read_bytes()[:1000])
    one_line_error(read_checkpoint, path, match="cannot read checkpoint .*a.ckpt")


def test_a_checkpoint_without_a_model_config_is_not_t5lits(tmp_path):
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1}}, tmp_path / "other.ckpt")
    one_line_error(read_checkpoint, tmp_path / "other.ckpt", match="not a t5lit checkpoint .*model_config")
    torch.save([1, 2], tmp_path / "list.ckpt")
    one_line_error(read_checkpoint, tmp_path / "list.ckpt", match="not a t5lit checkpoint")


def test_weights_that_do_not_fit_are_one_line(tmp_path):
    model, cfg = tiny()
    path = write_lightning_layout(tmp_path / "a.ckpt", model, cfg)
    wider, _ = tiny(d_ff=2 * cfg.d_ff)
    one_line_error(load_weights, wider, path, match="do not fit this model: shapes")
    deeper, _ = tiny(num_decoder_layers=cfg.num_decoder_layers + 1)
    one_line_error(load_weights, deeper, path, match="do not fit this model: missing")
    one_line_error(load_weights, deeper, tmp_path / "nope.ckpt", match="checkpoint not found")


def test_a_missing_hugging_face_directory_is_one_line(tmp_path):
    one_line_error(load_hf, tmp_path / "no-such-model", match="cannot load a transformers T5")
