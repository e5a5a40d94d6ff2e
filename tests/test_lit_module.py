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


def test_checkpoint_holds_the_model_config(tmp_path):
    module = T5LitModule(preset="tiny", model_overrides={"num_decoder_layers": 1})
    assert module.hparams["model_config"]["num_decoder_layers"] == 1
    again = T5LitModule(model_config=module.hparams["model_config"])
    assert again.config == module.config
