"""``t5lit eval``: score a checkpoint on a task or mixture by generation, and print a table."""

from __future__ import annotations

from pathlib import Path

import torch

from t5lit.registry import ConfigError


def evaluate_checkpoint(ckpt_path: str, task: str, *, data_dir: str | None = None, vocab: str = "builtin",
                        batch_size: int = 32, max_examples: int | None = None, num_beams: int | None = None,
                        accelerator: str = "auto") -> dict[str, dict[str, float]]:
    """Validation scores of ``ckpt_path`` on ``task`` (a task or mixture name), per task and metric.

    The vocabulary and lengths come from the checkpoint's data module when it was trained with one;
    ``vocab`` is the fallback."""
    import lightning as L

    from t5lit.data.datamodule import FinetuneDataModule
    from t5lit.data.mixtures import get_task_or_mixture
    from t5lit.lit_module import T5LitModule

    get_task_or_mixture(task)  # an unknown name fails before the checkpoint is read
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"checkpoint not found: {ckpt_path}")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "model_config" not in ckpt.get("hyper_parameters", {}):
        raise ConfigError(f"{ckpt_path} is not a t5lit checkpoint (no model_config in its hyper_parameters)")
    data_hp = ckpt.get("datamodule_hyper_parameters") or {}
    overrides = {"num_beams": num_beams} if num_beams else {}
    module = T5LitModule.load_from_checkpoint(ckpt_path, map_location="cpu", **overrides)
    data = FinetuneDataModule(tasks=task, vocab=data_hp.get("vocab", vocab), arch=module.config.arch,
                              inputs_length=data_hp.get("inputs_length", 512),
                              targets_length=data_hp.get("targets_length", 128), batch_size=batch_size, pack=False,
                              data_dir=data_dir, max_val_examples=max_examples)
    trainer = L.Trainer(accelerator=accelerator, logger=False, enable_progress_bar=True, enable_model_summary=False)
    trainer.validate(module, datamodule=data, verbose=False)
    scores: dict[str, dict[str, float]] = {}
    for key, value in trainer.callback_metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val":
            scores.setdefault(parts[1], {})[parts[2]] = float(value)
    print(format_scores(scores))
    return scores


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per task, one column per metric."""
    metrics = sorted({m for s in scores.values() for m in s})
    lines = ["| task | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for task in sorted(scores):
        cells = [f"{scores[task][m]:.2f}" if m in scores[task] else "" for m in metrics]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
