"""OptunaPruningCallback in a real (tiny) Lightning fit: reports val/loss keyed on the global step,
continues the step axis across stages, raises TrialPruned when the pruner says so."""

import lightning as L
import optuna
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from t5lit.callbacks import OptunaPruningCallback


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.lin(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class PruneAt(optuna.pruners.BasePruner):
    def __init__(self, step):
        self.step = step

    def prune(self, study, trial):
        return max(trial.intermediate_values, default=-1) >= self.step


def fit(callback, steps=4):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(16, 4), torch.randn(16, 1)), batch_size=4)
    trainer = L.Trainer(max_steps=steps, val_check_interval=2, check_val_every_n_epoch=None, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", callbacks=[callback])
    trainer.fit(Tiny(), data, data)


def test_reports_each_validation_across_stages():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    cb = OptunaPruningCallback(trial, monitor="val/loss")
    fit(cb)
    fit(cb)  # a second stage (fine-tuning after pre-training) continues the step axis
    steps = sorted(study.trials[0].intermediate_values)
    assert steps == [2, 4, 6, 8]
    assert all(v > 0 for v in study.trials[0].intermediate_values.values())


def test_prunes_when_the_pruner_says_so():
    study = optuna.create_study(pruner=PruneAt(4))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="pruned at step 4: val/loss="):
        fit(OptunaPruningCallback(trial, monitor="val/loss"), steps=8)
    assert sorted(study.trials[0].intermediate_values) == [2, 4]


def test_under_ddp_rank_zero_decides_and_every_rank_follows():
    """Rank 0 reports and asks the pruner; the decision is broadcast; a follower rank only receives it."""
    from types import SimpleNamespace

    from t5lit.callbacks import RANK_FOLLOWER_TRIAL

    def trainer(rank0: bool, decision: bool, sent: list):
        def broadcast(obj, src=0):
            sent.append((obj, src))
            return decision

        return SimpleNamespace(sanity_checking=False, callback_metrics={"val/loss": torch.tensor(1.5)},
                               global_step=3, is_global_zero=rank0, world_size=2,
                               strategy=SimpleNamespace(broadcast=broadcast))

    study = optuna.create_study(pruner=PruneAt(0))
    lead = OptunaPruningCallback(study.ask())
    sent = []
    with pytest.raises(optuna.TrialPruned, match="pruned at step 3"):
        lead.on_validation_end(trainer(True, True, sent), None)
    assert sent == [(True, 0)] and lead.trial.storage.get_trial(lead.trial._trial_id).intermediate_values == {3: 1.5}

    follower = OptunaPruningCallback(RANK_FOLLOWER_TRIAL)  # no report(), no should_prune() on this rank
    sent = []
    follower.on_validation_end(trainer(False, False, sent), None)
    assert sent == [(False, 0)]
    with pytest.raises(optuna.TrialPruned):
        follower.on_validation_end(SimpleNamespace(**{**vars(trainer(False, True, sent)), "global_step": 4}), None)
