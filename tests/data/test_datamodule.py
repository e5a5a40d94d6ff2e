"""PretrainDataModule: deterministic examples, exact resume from a mid-epoch checkpoint, length and sentinel
errors. FinetuneDataModule: what each stage loads, and a mixture with an empty task."""

import lightning as L
import pytest
import torch

from t5lit.data.datamodule import FinetuneDataModule, PretrainDataModule
from t5lit.lit_module import T5LitModule
from t5lit.registry import ConfigError


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


def fit(tmp_path, max_steps, ckpt=None, every=None, **data_args):
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
    trainer.fit(module, datamodule=data(**data_args), ckpt_path=ckpt)
    return rec.losses


@pytest.mark.slow
def test_resume_from_a_mid_epoch_checkpoint_sees_the_same_batches(tmp_path):
    full = fit(tmp_path / "a", 8)
    fit(tmp_path / "b", 4, every=4)
    ckpt = next((tmp_path / "b").glob("*.ckpt"))
    resumed = fit(tmp_path / "c", 8, ckpt=str(ckpt))
    assert len(full) == 8 and len(resumed) == 4
    assert resumed == full[4:]


@pytest.mark.slow
def test_persistent_workers_see_every_epochs_batches(tmp_path):
    """Several short epochs: two persistent DataLoader workers give the batches of no workers, epoch after
    epoch (the stream's position reaches the workers through shared memory)."""
    small = dict(max_tokens=500)
    d = data(**small)
    d.setup("fit")
    assert d.num_train_chunks // 4 <= 4  # 8 steps cross at least one epoch boundary
    assert fit(tmp_path / "w2", 8, num_workers=2, **small) == fit(tmp_path / "w0", 8, num_workers=0, **small)


def test_configured_targets_length_pads_or_errors_with_the_computed_length():
    dm = data(targets_length=12)
    assert dm.targets_length == 12 and dm.fingerprint() != data().fingerprint()
    assert data().targets_length == 8  # span corruption at 32 inputs: 8 (EOS included)
    with pytest.raises(ConfigError, match=r"^expected targets length for span_corruption \(114\) is greater than "
                                          r"the configured targets_length \(100\) at inputs_length 512$"):
        data(inputs_length=512, targets_length=100)
    dm.setup("fit")
    assert dm.train_batch(0, 0)["decoder_target_tokens"].shape == (4, 12)


def test_too_few_extra_ids_fail_at_setup_naming_how_many_are_needed():
    # 4,096 inputs: chunks of 4,550 tokens hold 227 noise spans, and the builtin vocabulary has 100 sentinels.
    dm = data(inputs_length=4096, batch_size=2, val_examples=1, max_tokens=30_000)
    with pytest.raises(ConfigError, match="^this example needs 227 sentinels but the vocabulary has 100 extra ids"):
        dm.setup("fit")


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
RTE_ROWS = "0\tA dog runs.\tAn animal runs.\tentailment\n1\tIt is dark.\tIt is noon.\tnot_entailment\n"


def test_finetune_validation_needs_no_training_files(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(RTE_HEADER + RTE_ROWS)
    dm = FinetuneDataModule(tasks="glue_rte", data_dir=str(tmp_path), inputs_length=32, targets_length=4,
                            batch_size=2)
    dm.setup("validate")
    assert dm.train is None and len(dm.val["glue_rte"]) == 2
    batch = next(iter(dm.val_dataloader()))
    assert batch["task_index"].tolist() == [0, 0] and batch["inputs"].shape[0] == 2
    with pytest.raises(ConfigError, match=f"data file not found: {tmp_path / 'RTE' / 'train.tsv'}"):
        dm.setup("fit")


def test_a_mixture_with_a_task_without_training_examples_names_it(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text(RTE_HEADER + RTE_ROWS)
    (tmp_path / "RTE" / "train.tsv").write_text(RTE_HEADER)  # a header, no rows
    dm = FinetuneDataModule(tasks=["builtin_kind", "glue_rte"], data_dir={"glue_rte": str(tmp_path)},
                            inputs_length=32, targets_length=4, batch_size=2, max_val_examples=2)
    with pytest.raises(ConfigError, match="^task 'glue_rte' has no training examples; every task in a mixture"):
        dm.setup("fit")
