"""PretrainDataModule: deterministic examples, exact resume from a mid-epoch checkpoint."""

import lightning as L
import pytest
import torch

from t5lit.data.datamodule import PretrainDataModule
from t5lit.lit_module import T5LitModule


def data(**kw):
    args = dict(corpus="builtin", objective="span_corruption", inputs_length=32, batch_size=4, val_examples=8)
    args.update(kw)
    return PretrainDataModule(**args)


def test_batches_are_deterministic_and_shaped():
    a, b = data(), data()
    a.setup("fit")
    b.setup("fit")
    x, y = a.train_batch(0, 3), b.train_batch(0, 3)
    assert x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)
    assert x["encoder_input_tokens"].shape == (4, 32)
    assert x["decoder_target_tokens"].shape == (4, a.targets_length)
    z = a.train_batch(1, 3)  # another epoch: another order and other noise
    assert not (z["encoder_input_tokens"] == x["encoder_input_tokens"]).all()


@pytest.mark.parametrize("arch", ["decoder_only", "prefix_lm"])
def test_decoder_only_rows(arch):
    dm = data(arch=arch)
    dm.setup("fit")
    batch = dm.train_batch(0, 0)
    assert "encoder_input_tokens" not in batch
    assert batch["decoder_input_tokens"].shape == (4, 32 + dm.targets_length)


class Recorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(round(float(outputs["loss"]), 6))


def fit(tmp_path, max_steps, ckpt=None, every=None):
    torch.manual_seed(0)
    rec = Recorder()
    callbacks = [rec]
    if every:
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every, save_top_k=-1,
                                         filename="s{step}"))
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, limit_val_batches=0,
                        enable_checkpointing=bool(every))
    module = T5LitModule(preset="tiny", lr=0.01, warmup_steps=5)
    trainer.fit(module, datamodule=data(), ckpt_path=ckpt)
    return rec.losses


@pytest.mark.slow
def test_resume_from_a_mid_epoch_checkpoint_sees_the_same_batches(tmp_path):
    full = fit(tmp_path / "a", 8)
    fit(tmp_path / "b", 4, every=4)
    ckpt = next((tmp_path / "b").glob("*.ckpt"))
    resumed = fit(tmp_path / "c", 8, ckpt=str(ckpt))
    assert len(full) == 8 and len(resumed) == 4
    assert resumed == full[4:]
