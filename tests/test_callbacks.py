"""NonFiniteLossGuard: stops on a NaN/inf training loss at its check steps, and under DDP all ranks stop."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from t5lit.callbacks import NonFiniteLoss, NonFiniteLossGuard
from t5lit.lit_module import T5LitModule


def trainer_at(step: int, world_size: int = 1, others_bad: bool = False):
    calls = []

    def reduce_boolean_decision(decision, all=True):
        calls.append((decision, all))
        return decision or others_bad

    strategy = SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision)
    return SimpleNamespace(global_step=step, world_size=world_size, strategy=strategy), calls


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_guard_stops_on_a_non_finite_loss_at_check_steps_only(value):
    guard = NonFiniteLossGuard(every=5)
    trainer, _ = trainer_at(3)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(value)}, None, 0)  # not a check step
    trainer, _ = trainer_at(5)
    with pytest.raises(NonFiniteLoss, match=f"training loss became {value} at step 5"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(value)}, None, 0)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.5)}, None, 0)


def test_under_ddp_every_rank_stops_when_one_rank_sees_nan():
    guard = NonFiniteLossGuard(every=1)
    trainer, calls = trainer_at(4, world_size=2, others_bad=True)
    with pytest.raises(NonFiniteLoss, match="non-finite on another rank at step 4"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.0)}, None, 0)
    assert calls == [(False, False)]  # this rank's decision, any-rank reduction
    trainer, calls = trainer_at(4, world_size=2, others_bad=False)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.0)}, None, 0)
    assert calls == [(False, False)]


def test_a_real_fit_with_a_nan_loss_stops_with_the_reason():
    class NaNAfterTwo(T5LitModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if batch_idx >= 2 else loss

    module = NaNAfterTwo(preset="tiny", optimizer="adamw", lr=1e-3, schedule="constant", warmup_steps=0)
    g = torch.Generator().manual_seed(0)
    tgt = torch.randint(3, 200, (2, 5), generator=g)
    batch = {"encoder_input_tokens": torch.randint(3, 200, (2, 7), generator=g), "decoder_target_tokens": tgt,
             "decoder_input_tokens": torch.cat([torch.zeros(2, 1, dtype=torch.long), tgt[:, :-1]], 1),
             "decoder_loss_weights": torch.ones(2, 5)}
    trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[NonFiniteLossGuard(every=2)])
    with pytest.raises(NonFiniteLoss, match="training loss became nan at step 4"):
        trainer.fit(module, train_dataloaders=DataLoader([batch] * 10, batch_size=None))
