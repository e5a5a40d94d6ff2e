"""Sharded training for models that do not fit one device (T5 3B and 11B, T5 1.1 XL and XXL: Table 14):
``trainer.strategy: fsdp_blocks``.

It is PyTorch's FSDP (``fully_shard``, "FSDP2") through Lightning's ``ModelParallelStrategy``, applied to a built
model from outside (DESIGN.md section 5, item 5; torchtitan's parallelize.py beside its model.py):

- every transformer block is its own unit: its weights are gathered just before it runs and freed after, its
  gradients reduce-scattered, so a device holds 1/world of the weights, gradients and optimizer state plus
  one block at a time; the rest (the embedding, which is also the output layer, the relative position
  biases and the final norms) is the root unit. A shared encoder-decoder (Table 2) is one unit: its blocks
  share weights across stacks. ``begin_decoding`` and ``decode_step`` gather like ``forward``, so validation
  decodes under sharding;
- pure data parallelism over every process (the ``data_parallel`` axis of the device mesh; no tensor
  parallelism), with Lightning's launcher, ranks and samplers as under ``ddp``;
- ``trainer.precision: bf16-mixed`` gathers the weights in bf16 and reduces gradients in fp32; ``32-true``,
  ``bf16-true`` and ``16-true`` work too (Lightning's ModelParallelStrategy takes no other);
- checkpoints are ordinary t5lit ``.ckpt`` files (the full state dict, gathered to rank 0), so resuming,
  ``t5lit eval``, evaluate stages and ``export-hf`` read them as any other; resuming loads them back sharded.

The optimizer must be AdamW: torch's Adafactor factors each weight's second moment over its rows and columns,
which a shard does not hold whole (t5lit/checks.py says so before any work). Registering the strategy name with
Lightning happens on import (t5lit.lit_module imports this module). Also works on CPU with gloo (the tests).
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch import nn

STRATEGY = "fsdp_blocks"
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-true")  # ModelParallelStrategy's


class BlockShardedStrategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` as plain FSDP over every process, writing single-file checkpoints; the
    LightningModule shards itself in ``configure_model`` (``shard_model``)."""

    strategy_name = STRATEGY

    def __init__(self, **kwargs):
        kwargs.setdefault("save_distributed_checkpoint", False)  # one .ckpt file, as every other t5lit run
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        # Every process is a data-parallel (sharding) rank: FSDP across nodes and devices, no tensor parallelism.
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def load_checkpoint(self, checkpoint_path, weights_only: bool | None = None):
        """Lightning's, made exact for parameters that have no optimizer state in the checkpoint (under gradual
        unfreezing, Table 10, the blocks still frozen at its step). torch's sharded loader would refuse them
        (strict), and first gives every parameter a state with a zero-gradient step, which would start their
        Adam step count at 1 instead of 0 once they unfreeze; so the optimizer is loaded non-strictly and the
        states the checkpoint does not hold are removed again, as in the run that wrote it. The model's weights
        stay strict: their names and shapes are checked here first (the file is memory-mapped, not read)."""
        from pathlib import Path

        from t5lit.checkpoint import weight_problems
        from t5lit.registry import ConfigError

        path = Path(self.broadcast(checkpoint_path))
        module = self.lightning_module
        saved = torch.load(path, mmap=True, map_location="cpu", weights_only=False)
        problems = weight_problems({k: tuple(v.shape) for k, v in module.state_dict().items()}, saved["state_dict"])
        if problems:
            raise ConfigError(f"{path} does not fit this run's model: {problems}")
        names = [name for name, _ in module.named_parameters()]  # the order Lightning keys optimizer states by
        held = [{names[k] if isinstance(k, int) else k for k in state["state"]} for state in saved["optimizer_states"]]
        strict, module.strict_loading = module.strict_loading, False
        try:
            out = super().load_checkpoint(path, weights_only=weights_only)
        finally:
            module.strict_loading = strict
        for optimizer, keep in zip(self.optimizers, held):
            for name, p in module.named_parameters():
                if name not in keep:
                    optimizer.state.pop(p, None)
        return out


if STRATEGY not in StrategyRegistry:
    StrategyRegistry.register(STRATEGY, BlockShardedStrategy,
                              description="FSDP (fully_shard), one unit per transformer block; t5lit/fsdp.py")


def is_sharding(strategy) -> bool:
    """Whether a Trainer's strategy is this module's (the LightningModule then calls ``shard_model``)."""
    return isinstance(strategy, BlockShardedStrategy)


def shard_model(model: nn.Module, mesh, param_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard ``model`` in place over the 1-D device ``mesh``: one FSDP unit per block, the root unit for the
    rest (see the module docstring). ``param_dtype``: the dtype weights are gathered and computed in (bf16 for
    bf16-mixed), gradients reduced in fp32. Returns the model (the same object). Idempotent."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from t5lit.model.stack import Stack

    if isinstance(model, FSDPModule):
        return model
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    if not getattr(getattr(model, "cfg", None), "share_encoder_decoder", False):
        for stack in (m for m in model.modules() if isinstance(m, Stack)):
            for block in stack.layers:
                fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    for method in ("begin_decoding", "decode_step"):  # generation gathers the root's weights as forward does
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    return model
