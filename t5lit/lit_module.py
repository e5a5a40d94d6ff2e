"""ONE LightningModule for every architecture x objective x task (DESIGN.md section 5, item 6).

The module consumes the model features of DESIGN.md section 2 and nothing else: the objective, the task
and the packing are the data side's business. ``model_step`` is shared by train, validation and test.
Validation batches that also carry ``inputs`` (fine-tuning) are decoded and scored by the Evaluator
(t5lit/evaluator.py) over the datamodule's validation examples; metrics are logged as
``val/<task>/<metric>`` and the structured result is ``last_eval`` (what BestPerTask reads).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from t5lit import fsdp  # registers trainer.strategy "fsdp_blocks" with Lightning
from t5lit.config import ModelConfig, preset_config
from t5lit.model.architectures import build_model, freeze_all_but_adapters, parameter_counts
from t5lit.model.cpu import apply_cpu_fast_paths
from t5lit.optim import build_optimizer, schedule_fn

MODEL_FEATURES = (
    "encoder_input_tokens", "encoder_segment_ids", "encoder_positions",
    "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
    "decoder_segment_ids", "decoder_positions", "decoder_causal_attention",
)


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                           z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean token cross entropy over ``weights`` (and the z-loss of PaLM, z_loss * log(Z)^2).

    logits (B, T, V) any float dtype; targets (B, T) int; weights (B, T) float. Computed in fp32.
    Returns (loss including z-loss, cross entropy alone)."""
    logits = logits.float()
    flat = logits.view(-1, logits.size(-1))
    ce = F.cross_entropy(flat, targets.reshape(-1).long(), reduction="none")  # (B*T,)
    w = weights.reshape(-1).to(ce.dtype)
    denom = w.sum().clamp_min(1.0)
    ce_mean = (ce * w).sum() / denom
    if z_loss:
        log_z = torch.logsumexp(flat, dim=-1)
        return ce_mean + z_loss * (log_z.square() * w).sum() / denom, ce_mean
    return ce_mean, ce_mean


class T5LitModule(L.LightningModule):
    """Train, validate and test any t5lit model.

    Args:
        preset: a ModelConfig preset name (``t5lit list presets``).
        arch: encoder_decoder | decoder_only | prefix_lm (linked from the CLI to the data side).
        model_overrides: ModelConfig fields to change from the preset (e.g. ``{num_decoder_layers: 6}``).
        model_config: a full ModelConfig as a dict; when given, preset/arch/overrides are ignored
            (checkpoints store it, so a checkpoint rebuilds its model without the preset table).
        optimizer: adafactor | adamw. lr: base learning rate (see t5lit.optim for each schedule).
        schedule: inverse_sqrt | constant | cosine | linear. warmup_steps: see t5lit.optim.
        total_steps: for cosine/linear decay; default trainer.max_steps.
        z_loss: weight of the log(Z)^2 auxiliary loss (0 = off).
        num_beams, length_penalty_alpha, max_decode_length: decoding for validation. ``num_beams`` None:
            each task's own (greedy; beam search of 4 with alpha 0.6 for WMT and CNN/DM, as T5); an integer
            decodes every task so.
        compile: torch.compile the model (default: on for CUDA, off elsewhere; a run's stages decide by their
            length on CPU, ``t5lit.model.compile_plan``).
        cpu_fast_paths: on CPU, swap in ``t5lit.model.cpu.apply_cpu_fast_paths`` (the fast paths chosen for
            this CPU: oneDNN linears, the CPU training attention) when the Trainer sets the model up; False
            keeps plain PyTorch modules.
        init_from: a .ckpt whose model weights initialise this model (fine-tuning a pre-trained run).
        finetune_method: full | adapters | gradual_unfreezing (Section 3.5.1). adapters: the model (built with
            ``adapter_dim``) trains only its adapters and layer norms; every other weight gets
            requires_grad=False here, for the whole stage. gradual_unfreezing is the GradualUnfreezing callback's.
    """

    def __init__(self, preset: str = "tiny", arch: str = "encoder_decoder", model_overrides: dict | None = None,
                 model_config: dict | None = None, optimizer: str = "adafactor", lr: float = 0.01,
                 schedule: str = "inverse_sqrt", warmup_steps: int = 10_000, total_steps: int | None = None,
                 min_lr_ratio: float = 0.0, weight_decay: float = 0.0, z_loss: float = 0.0,
                 num_beams: int | None = None, length_penalty_alpha: float = 0.6, max_decode_length: int = 64,
                 compile: bool | None = None, init_from: str | None = None, cpu_fast_paths: bool = True,
                 finetune_method: str = "full"):
        super().__init__()
        if model_config is None:
            cfg = preset_config(preset, arch=arch, **(model_overrides or {}))
        else:
            cfg = ModelConfig.from_dict(model_config)
        self.config = cfg
        self.save_hyperparameters(ignore=["init_from"])
        self.hparams["model_config"] = cfg.to_dict()
        self.model = build_model(cfg)
        if init_from:
            self.load_model_weights(init_from)
        if finetune_method == "adapters":
            freeze_all_but_adapters(self.model)  # before any optimizer, DDP or FSDP wrapper sees the model
        self._compile, self._cpu_fast_paths = compile, cpu_fast_paths
        self._val_outputs: list[tuple[int, list[int], list[list[int]]]] = []
        self._evaluator = None
        self.last_eval = None  # the EvalResult of the latest validation (fine-tuning)

    # ----------------------------------------------------------------------------------------- model
    def configure_model(self):
        # The device the Trainer will run on (the module itself is moved there only after this hook).
        device = self._trainer.strategy.root_device if self._trainer is not None else self.device
        if device.type == "cpu" and self._cpu_fast_paths:
            apply_cpu_fast_paths(self.model)  # in place, idempotent; the state dict keys stay the same
        if self._trainer is not None and fsdp.is_sharding(self._trainer.strategy):
            bf16 = str(self._trainer.precision) == "bf16-mixed"
            fsdp.shard_model(self.model, self.device_mesh["data_parallel"], torch.bfloat16 if bf16 else None)
        use = self._compile if self._compile is not None else device.type == "cuda"
        if use and not hasattr(self, "_compiled"):
            # Kept out of the module tree so the state dict holds the weights once, under "model.".
            self.__dict__["_compiled"] = torch.compile(self.model)

    def load_model_weights(self, ckpt_path: str) -> None:
        """Copy the model weights of a t5lit checkpoint (architecture and sizes must match)."""
        from t5lit.checkpoint import load_weights
        from t5lit.registry import ConfigError

        try:
            load_weights(self.model, ckpt_path)
        except ConfigError as err:
            raise ConfigError(f"init_from: {err}") from None

    def forward(self, features: dict) -> torch.Tensor:
        model = getattr(self, "_compiled", self.model)
        return model({k: v for k, v in features.items() if k in MODEL_FEATURES})

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)  # (B, T_dec, V)
        return weighted_cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
                                      self.hparams.z_loss)

    @staticmethod
    def batch_geometry(batch: dict) -> tuple[int, int, int]:
        """(rows, encoder length, decoder length) from shapes alone."""
        rows, dec_len = batch["decoder_target_tokens"].shape
        enc = batch.get("encoder_input_tokens")
        return rows, (enc.shape[1] if enc is not None else 0), dec_len

    # ------------------------------------------------------------------------------------------ steps
    def on_fit_start(self):
        trainable, total = parameter_counts(self.model)
        if trainable < total:  # adapters (Table 10): what trains, where the user sees the stage start
            from lightning.pytorch.utilities import rank_zero_info

            rank_zero_info(f"{self.hparams.finetune_method}: {trainable:,d} of {total:,d} parameters train "
                           f"({100 * trainable / total:.2f}%)")
        # Dropout masks are a pure function of (seed, step, rank), like the batches, so that a run resumed
        # from a checkpoint takes exactly the steps the uninterrupted run would have taken.
        self._dropout_seed = torch.initial_seed() % 2**31

    def on_train_batch_start(self, batch, batch_idx):
        world = max(1, self.trainer.world_size)
        torch.manual_seed(self._dropout_seed * 1_000_003 + self.global_step * world + self.global_rank)

    def training_step(self, batch, batch_idx):
        loss, ce = self.model_step(batch)
        self.log("train/loss", ce, on_step=True, on_epoch=False, prog_bar=True)
        if self.hparams.z_loss:
            self.log("train/loss_with_z", loss, on_step=True, on_epoch=False)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0] if self.trainer.lr_scheduler_configs
                 else self.hparams.lr, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        _, ce = self.model_step(batch)
        rows = batch["decoder_target_tokens"].shape[0]
        self.log("val/loss", ce, on_step=False, on_epoch=True, prog_bar=True, batch_size=rows,
                 add_dataloader_idx=False, sync_dist=True)
        if "inputs" in batch and self._evaluator is not None:
            self._val_outputs.append(self._decode(batch))

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        _, ce = self.model_step(batch)
        self.log("test/loss", ce, on_epoch=True, batch_size=batch["decoder_target_tokens"].shape[0],
                 add_dataloader_idx=False, sync_dist=True)

    def evaluator(self):
        """The Evaluator of the fine-tuning datamodule's tasks with this module's decoding settings."""
        from t5lit.evaluator import Evaluator

        dm = self.trainer.datamodule
        hp = self.hparams
        return Evaluator(dm.eval_set.tasks, dm.vocab, num_beams=hp.num_beams,
                         length_penalty_alpha=hp.length_penalty_alpha, max_decode_length=hp.max_decode_length,
                         num_samples=dm.hparams.num_samples)

    def on_validation_epoch_start(self):
        self._val_outputs = []
        self._evaluator = self.evaluator() if hasattr(getattr(self.trainer, "datamodule", None), "eval_set") else None

    def _decode(self, batch: dict) -> tuple[list[int], list[int], list[list[int]]]:
        from t5lit.evaluator import ModelPredictor

        task = int(batch["task_index"][0])  # validation batches hold one task each
        tokens = self._evaluator.predict_batch(ModelPredictor(self.model), task, batch["inputs"])
        return (batch["task_index"].tolist(), batch["example_index"].tolist(), tokens)

    def on_validation_epoch_end(self):
        outputs, self._val_outputs = self._val_outputs, []
        if not outputs or self._evaluator is None:
            return
        tasks, examples, preds = [], [], []
        for t, e, p in outputs:
            tasks += t
            examples += e
            preds += p
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (tasks, examples, preds))
            tasks = [x for g in gathered for x in g[0]]
            examples = [x for g in gathered for x in g[1]]
            preds = [x for g in gathered for x in g[2]]
        result = self._evaluator.score_tokens(self.trainer.datamodule.eval_set, tasks, examples, preds)
        self.last_eval = result  # every rank scored all predictions (gathered above): the same result
        for task, r in result.tasks.items():
            for name, value in r.metrics.items():
                self.log(f"val/{task}/{name}", float(value), sync_dist=True)
        writer = getattr(self.logger, "experiment", None)
        if hasattr(writer, "add_text") and self.trainer.is_global_zero:
            for task, r in result.tasks.items():
                if r.samples:
                    writer.add_text(f"samples/{task}", r.samples_markdown(), self.global_step)

    # ------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(self.model.parameters(), hp.optimizer, hp.lr, hp.weight_decay)
        total = hp.total_steps or (self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None)
        fn = schedule_fn(hp.schedule, hp.warmup_steps, total, hp.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
