"""The one LightningModule: loss, optimizer wiring, logging names, and one step for every architecture."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from t5lit.lit_module import T5LitModule, weighted_cross_entropy


def test_weighted_cross_entropy_ignores_zero_weights_and_adds_z_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    targets = torch.randint(0, 7, (2, 3))
    w = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, ce = weighted_cross_entropy(logits, targets, w)
    picked = [(0, 0), (0, 1), (1, 0)]
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[i, j][None], targets[i, j][None])
                            for i, j in picked]).mean()
    assert torch.allclose(ce, expected) and torch.allclose(loss, ce)
    zl, ce2 = weighted_cross_entropy(logits, targets, w, z_loss=1e-2)
    z = torch.stack([torch.logsumexp(logits[i, j], -1) ** 2 for i, j in picked]).mean()
    assert torch.allclose(zl, expected + 1e-2 * z) and torch.allclose(ce2, expected)


def batch_for(arch):
    g = torch.Generator().manual_seed(0)
    tgt = torch.randint(3, 200, (4, 6), generator=g)
    dec_in = torch.cat([torch.zeros(4, 1, dtype=torch.long), tgt[:, :-1]], 1)
    b = {"decoder_input_tokens": dec_in, "decoder_target_tokens": tgt, "decoder_loss_weights": torch.ones(4, 6)}
    if arch == "encoder_decoder":
        b["encoder_input_tokens"] = torch.randint(3, 200, (4, 8), generator=g)
    if arch == "prefix_lm":
        b["decoder_causal_attention"] = torch.tensor([[1, 1, 1, 0, 0, 0]] * 4)
    return b


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "prefix_lm"])
def test_training_reduces_loss_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    module = T5LitModule(preset="tiny", arch=arch, optimizer="adamw", lr=3e-3, schedule="constant", warmup_steps=0)
    batch = batch_for(arch)
    trainer = L.Trainer(max_steps=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    first = module.model_step(batch)[1].item()
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 30, batch_size=None))
    assert module.model_step(batch)[1].item() < first - 0.5
    assert "train/loss" in trainer.callback_metrics and "train/lr" in trainer.callback_metrics


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "prefix_lm"])
def test_bf16_mixed_training_on_cpu_keeps_attention_weights_and_learns(arch, monkeypatch):
    """Lightning's bf16-mixed on CPU is torch.autocast: the attention then keeps its bf16 weights for backward."""
    from t5lit.model import cpu

    kept = []
    keep = cpu._attention_forward_keeping_weights
    monkeypatch.setattr(cpu, "_attention_forward_keeping_weights", lambda *a: kept.append(a[0].dtype) or keep(*a))
    torch.manual_seed(0)
    module = T5LitModule(preset="tiny", arch=arch, model_overrides={"dropout_rate": 0.0}, optimizer="adamw",
                         lr=3e-3, schedule="constant", warmup_steps=0)
    batch = batch_for(arch)
    trainer = L.Trainer(max_steps=30, accelerator="cpu", precision="bf16-mixed", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    first = module.model_step(batch)[1].item()
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 30, batch_size=None))
    assert module.model_step(batch)[1].item() < first - 0.5
    assert kept and set(kept) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in module.parameters())  # mixed: fp32 weights


def test_checkpoint_holds_the_model_config(tmp_path):
    module = T5LitModule(preset="tiny", model_overrides={"num_decoder_layers": 1})
    assert module.hparams["model_config"]["num_decoder_layers"] == 1
    again = T5LitModule(model_config=module.hparams["model_config"])
    assert again.config == module.config


# ---- fine-tuning: FinetuneDataModule + T5LitModule + Trainer, validated by generation ------------------------

def finetune(tmp_path, tasks, steps=2):
    from lightning.pytorch.loggers import CSVLogger

    from t5lit.data.datamodule import FinetuneDataModule

    torch.manual_seed(0)
    data = FinetuneDataModule(tasks=tasks, inputs_length=64, targets_length=8, batch_size=8, max_val_examples=8,
                              num_samples=2)
    module = T5LitModule(preset="tiny", lr=0.01, warmup_steps=5, max_decode_length=4)
    trainer = L.Trainer(max_steps=steps, val_check_interval=steps, check_val_every_n_epoch=None, accelerator="cpu",
                        logger=CSVLogger(tmp_path), log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    return trainer, data


def expected_metric_keys(data) -> set[str]:
    """``val/<task>/<metric>`` for the metrics each task's ``evaluate`` returns on its validation examples."""
    keys = set()
    for task in data.tasks:
        raw = data.val_raw[task.name]
        names = task.evaluate(raw, [task.format(ex)["targets"] for ex in raw])
        keys |= {f"val/{task.name}/{metric}" for metric in names}
    return keys


def test_finetuning_a_task_logs_its_metrics_by_name(tmp_path):
    import csv

    trainer, data = finetune(tmp_path, "builtin_kind")
    assert trainer.global_step == 2
    logged = {k for k in trainer.callback_metrics if k.startswith("val/")}
    assert expected_metric_keys(data) == {"val/builtin_kind/accuracy", "val/builtin_kind/f1"}
    assert logged == {"val/loss"} | expected_metric_keys(data)
    assert all(0 <= float(trainer.callback_metrics[k]) <= 100 for k in logged if k != "val/loss")
    with open(next(tmp_path.rglob("metrics.csv"))) as f:  # written by the logger at the validation step
        rows = list(csv.DictReader(f))
    assert any(row.get("val/builtin_kind/accuracy") for row in rows)
    assert any(row.get("train/loss") for row in rows)


def test_finetuning_a_mixture_logs_every_task(tmp_path):
    trainer, data = finetune(tmp_path, ["builtin_kind", "builtin_name"])
    stream = data._epoch_plan(0).stream()
    assert {name for name, _ in stream} == {"builtin_kind", "builtin_name"}  # both tasks are trained on
    assert data.rates["builtin_name"] > data.rates["builtin_kind"] > 0  # examples-proportional
    keys = expected_metric_keys(data)
    assert {"val/builtin_kind/accuracy", "val/builtin_name/exact_match", "val/builtin_name/rouge1"} <= keys
    assert keys <= set(trainer.callback_metrics)
    tasks = {k.split("/")[1] for k in trainer.callback_metrics if k.count("/") == 2 and k.startswith("val/")}
    assert tasks == {"builtin_kind", "builtin_name"}


def test_validation_decodes_with_each_tasks_beam_size(tmp_path, monkeypatch):
    import t5lit.evaluator as lm
    from t5lit.data.tasks import get_task
    from t5lit.evaluator import Evaluator

    assert {get_task(n).num_beams for n in ("wmt14_ende", "wmt14_enfr", "wmt16_enro", "cnn_dailymail")} == {4}
    assert get_task("glue_rte").num_beams == get_task("squad").num_beams == 1
    seen = []
    real = lm.generate
    monkeypatch.setattr(lm, "generate", lambda *a, **kw: seen.append(kw["num_beams"]) or real(*a, **kw))
    monkeypatch.setattr(Evaluator, "beams_for", lambda self, task: {"builtin_kind": 2, "builtin_name": 3}[task.name]
                        if self.num_beams is None else self.num_beams)
    finetune(tmp_path, ["builtin_kind", "builtin_name"])  # num_beams None: each task's own
    assert set(seen) == {2, 3}
