"""Scoring saved weights: ``t5lit eval`` (a checkpoint on a task or mixture) and the pipeline's evaluate stages.

Both load the model from a checkpoint (t5lit/checkpoint.py) and hand it to the Evaluator as a predictor; no
Trainer is needed. The vocabulary and lengths come from the checkpoint's data module when it was trained with
one (so the scores equal those logged in training at its step); the arguments are the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from t5lit.registry import ConfigError


def _device(accelerator: str):
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise ConfigError(f"accelerator {accelerator!r} but no CUDA device is visible; use cpu or auto")
    return torch.device("cpu")


def load_model(ckpt_path: str | Path):
    """(model in eval mode, the checkpoint's contents) of a t5lit checkpoint."""
    from t5lit.checkpoint import model_config, model_weights, read_checkpoint
    from t5lit.config import ModelConfig
    from t5lit.model.architectures import build_model

    ckpt = read_checkpoint(ckpt_path)
    model = build_model(ModelConfig.from_dict(model_config(ckpt)))
    model.load_state_dict(model_weights(ckpt), strict=True)
    return model.eval(), ckpt


def evaluate_checkpoint(ckpt_path: str, task: str, *, data_dir: str | None = None, vocab: str = "builtin",
                        batch_size: int = 32, max_examples: int | None = None, num_beams: int | None = None,
                        accelerator: str = "auto", inputs_length: int | None = None,
                        targets_length: int | None = None, print_table: bool = True) -> dict[str, dict[str, float]]:
    """Validation scores of ``ckpt_path`` on ``task`` (a task or mixture name), per task and metric."""
    from t5lit.data.mixtures import get_task_or_mixture
    from t5lit.data.vocab import load_vocabulary
    from t5lit.evaluator import EvalSet, Evaluator, ModelPredictor

    tasks = get_task_or_mixture(task)  # an unknown name fails before the checkpoint is read
    for name, value in (("batch_size", batch_size), ("max_examples", max_examples), ("num_beams", num_beams),
                        ("inputs_length", inputs_length), ("targets_length", targets_length)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be a positive integer, got {value}")
    model, ckpt = load_model(ckpt_path)
    hp, data_hp = ckpt.get("hyper_parameters") or {}, ckpt.get("datamodule_hyper_parameters") or {}
    vocabulary = load_vocabulary(data_hp.get("vocab", vocab))
    data = EvalSet.load(tasks, vocabulary, inputs_length=inputs_length or data_hp.get("inputs_length", 512),
                        targets_length=targets_length or data_hp.get("targets_length") or 128,
                        max_examples=max_examples, data_dirs=data_dir)
    evaluator = Evaluator(tasks, vocabulary, num_beams=num_beams or hp.get("num_beams"),
                          length_penalty_alpha=hp.get("length_penalty_alpha", 0.6),
                          max_decode_length=hp.get("max_decode_length", 64))
    device = _device(accelerator)
    result = evaluator.evaluate(ModelPredictor(model.to(device)), data, batch_size, device, progress=print_table)
    scores = result.metrics()
    if print_table:
        print(format_scores(scores))
    return scores


def evaluate_weights(stage_dir: Path, weights: str, names: list[str], vocab: str, *, evaluation,
                     inputs_length: tuple[int, int] | int, data_dirs: Mapping[str, str | None] | None = None):
    """The EvalResult of an earlier stage's weights on ``names`` (tasks and mixtures): its ``final.ckpt``, or
    with ``weights="best"`` each task's ``best-<task>.ckpt`` (the stage must have kept them)."""
    from t5lit.data.mixtures import get_task_or_mixture
    from t5lit.data.vocab import load_vocabulary
    from t5lit.evaluator import EvalResult, EvalSet, Evaluator, ModelPredictor

    lengths = inputs_length if isinstance(inputs_length, tuple) else (inputs_length, 512)
    tasks = list({t.name: t for n in names for t in get_task_or_mixture(n)}.values())
    vocabulary = load_vocabulary(vocab)
    device = _device("auto")
    groups: dict[Path, list] = {}
    for task in tasks:
        path = stage_dir / ("final.ckpt" if weights == "final" else f"best-{task.name}.ckpt")
        if not path.is_file():
            raise ConfigError(f"evaluate: {path} not found (the stage keeps final.ckpt when a later stage starts "
                              "from it, and best-<task>.ckpt per task it validated with keep_best_checkpoints)")
        groups.setdefault(path, []).append(task)
    out = EvalResult()
    for path, group in groups.items():
        model, _ = load_model(path)
        data = EvalSet.load(group, vocabulary, inputs_length=lengths[0], targets_length=lengths[1],
                            max_examples=evaluation.max_val_examples, data_dirs=dict(data_dirs or {}))
        evaluator = Evaluator(group, vocabulary, num_beams=evaluation.num_beams,
                              length_penalty_alpha=evaluation.length_penalty_alpha,
                              max_decode_length=evaluation.max_decode_length, num_samples=evaluation.num_samples)
        result = evaluator.evaluate(ModelPredictor(model.to(device)), data, evaluation.batch_size or 32, device)
        out.tasks.update(result.tasks)
    return out


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per task, one column per metric."""
    metrics = sorted({m for s in scores.values() for m in s})
    lines = ["| task | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for task in sorted(scores):
        cells = [f"{scores[task][m]:.2f}" if m in scores[task] else "" for m in metrics]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
