"""Gradual unfreezing (paper Section 3.5.1, Table 10): the schedule, the blocks each step trains (from the top,
encoder and decoder in parallel, the embedding throughout), no optimizer state for frozen blocks, a schedule
that does not fit the model refused before any work, and a run killed mid-stage resuming exactly."""

from pathlib import Path

import lightning as L
import pytest
import torch

from t5lit.callbacks import GradualUnfreezing
from t5lit.checks import check_experiment
from t5lit.config import preset_config
from t5lit.experiment import load_experiment, resolve_experiment
from t5lit.lit_module import T5LitModule
from t5lit.model.architectures import blocks_from_top, build_model
from t5lit.pipeline import run_experiment
from t5lit.registry import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"


def test_the_papers_schedule_and_its_scaled_versions():
    # 2^18 steps, 12 blocks: "12 episodes of 2^18/12 steps each", block k from the top from episode k + 1 on
    assert GradualUnfreezing.schedule(2**18, 12) == [0, 21845, 43690, 65536, 87381, 109226, 131072, 152917,
                                                     174762, 196608, 218453, 240298]
    assert GradualUnfreezing.schedule(300, 2) == [0, 150]  # scaled with the run's steps and the model's depth
    assert GradualUnfreezing.schedule(1, 2) == [0, 0]  # fewer steps than blocks: every block trains the last step
    assert GradualUnfreezing.schedule(100, 3, every=30) == [0, 30, 60]


def names(model, params) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_groups_are_blocks_from_the_top_of_both_stacks():
    model = build_model(preset_config("tiny", num_encoder_layers=3, num_decoder_layers=3))
    groups = blocks_from_top(model)
    assert len(groups) == 3
    top = names(model, groups[0])
    assert top == {n for n, _ in model.named_parameters() if n.startswith(("encoder.layers.2.", "decoder.layers.2."))}
    assert {"encoder.rel_bias.embedding.weight", "decoder.rel_bias.embedding.weight"} <= names(model, groups[2])
    outside = {n for n, _ in model.named_parameters()} - set().union(*(names(model, g) for g in groups))
    assert outside == {"embed.weight", "encoder.final_norm.weight", "decoder.final_norm.weight"}


def test_groups_of_other_shapes():
    deep_encoder = build_model(preset_config("tiny", num_encoder_layers=3, num_decoder_layers=1))
    groups = [names(deep_encoder, g) for g in blocks_from_top(deep_encoder)]
    assert {n.rsplit(".layers.", 1)[0] + "." + n.split(".")[2] for n in groups[0] if ".layers." in n} == {
        "encoder.2", "decoder.0"}  # the two tops together
    assert "decoder.rel_bias.embedding.weight" in groups[0] and all(n.startswith("encoder.") for n in groups[2])
    lm = build_model(preset_config("tiny", arch="decoder_only"))
    assert [len(g) for g in blocks_from_top(lm)] == [len(list(lm.decoder.layers[1].parameters())),
                                                     len(list(lm.decoder.layers[0].parameters())) + 1]
    shared = build_model(preset_config("tiny", share_encoder_decoder=True))
    flat = [id(p) for g in blocks_from_top(shared) for p in g]
    assert len(flat) == len(set(flat))  # a shared weight in one group only


class Synthetic(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        enc, dec = torch.randint(3, 1000, (12,), generator=g), torch.randint(3, 1000, (6,), generator=g)
        return {"encoder_input_tokens": enc, "decoder_input_tokens": torch.cat([torch.zeros(1, dtype=torch.long),
                                                                               dec[:-1]]),
                "decoder_target_tokens": dec, "decoder_loss_weights": torch.ones(6)}


class Watch(L.Callback):
    """Per step: the names of the parameters the step changed, and of those the optimizer holds state for."""

    def __init__(self):
        self.moved, self.with_state = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.model.named_parameters())
        self.moved.append({n for n, p in params.items() if not torch.equal(p, self._before[n])})
        state = trainer.optimizers[0].state
        self.with_state.append({n for n, p in params.items() if state.get(p)})


def test_each_step_trains_the_top_blocks_of_its_episode_and_the_embedding():
    torch.manual_seed(0)
    module = T5LitModule(preset="tiny", model_overrides={"num_encoder_layers": 3, "num_decoder_layers": 3},
                         optimizer="adafactor", lr=0.01, schedule="constant", warmup_steps=0, cpu_fast_paths=False)
    watch = Watch()
    trainer = L.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[GradualUnfreezing(6), watch])
    trainer.fit(module, torch.utils.data.DataLoader(Synthetic(), batch_size=4))
    groups = [names(module.model, g) for g in blocks_from_top(module.model)]
    everything = {n for n, _ in module.model.named_parameters()}
    always = everything - set().union(*groups)
    starts = GradualUnfreezing.schedule(6, 3)
    assert starts == [0, 2, 4]
    for step in range(6):
        expected = always.union(*(g for g, s in zip(groups, starts) if s <= step))
        assert watch.moved[step] == expected, step  # exactly the trainable set moved
        assert watch.with_state[step] == expected  # and a frozen block has no optimizer state (nothing drifts)
    assert watch.moved[0] == always | groups[0] and watch.moved[5] == everything


def test_a_schedule_that_does_not_fit_the_model_is_one_line(tmp_path):
    exp = resolve_experiment(DEBUG, {"finetune.method": "gradual_unfreezing", "finetune.unfreeze_every": 6})
    with pytest.raises(ConfigError) as err:
        check_experiment(exp, tmp_path / "run")
    assert str(err.value) == ("stage 'builtin_kind': finetune.unfreeze_every 6 does not fit 2 blocks per stack in 6 "
                              "steps: the bottom block would start at step 6; use at most 5, or null for steps / "
                              "blocks")
    assert not (tmp_path / "run").exists()
    check_experiment(resolve_experiment(DEBUG, {"finetune.method": "gradual_unfreezing",
                                                "finetune.unfreeze_every": 5}))
    with pytest.raises(ConfigError, match=r"^override: finetune.unfreeze_every applies to method gradual_unfreezing, "
                                          r"not full; set unfreeze_every: null$"):
        resolve_experiment(DEBUG, {"finetune.unfreeze_every": 5})


class Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_result(tmp_path):
    class CrashAt(L.Callback):  # dies after the checkpoint of step 3, before block 3 unfreezes at step 4
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 4 and trainer.logger.version.startswith("finetune"):
                raise Crash()

    cfg = load_experiment(DEBUG, {"model.overrides": {"dropout_rate": 0.1, "num_encoder_layers": 3,
                                                      "num_decoder_layers": 3},
                                  "finetune.method": "gradual_unfreezing"})
    whole = run_experiment(cfg, tmp_path / "whole")
    with pytest.raises(Crash):
        run_experiment(cfg, tmp_path / "crashed", callbacks=[CrashAt()])
    assert run_experiment(cfg, tmp_path / "crashed") == whole
    a = torch.load(tmp_path / "whole/finetune/builtin_kind/best-builtin_kind.ckpt", weights_only=False)
    b = torch.load(tmp_path / "crashed/finetune/builtin_kind/best-builtin_kind.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
