"""Scoring saved weights: ``t5lit eval`` (a checkpoint on a task or mixture) and the pipeline's evaluate stages.

Both load the model from a checkpoint (t5lit/checkpoint.py) and hand it to the Evaluator as a predictor; no
Trainer is needed. The vocabulary and lengths come from the checkpoint's data module when it was trained with
one (so the scores equal those logged in training at its step); the arguments are the fallback.

Several checkpoints are an ensemble (Table 13; t5lit/ensemble.py): ``t5lit eval --checkpoint a.ckpt b.ckpt``,
or an evaluate stage with ``members:``. Members whose architectures or vocabularies differ are refused in one
line after their configs are read and before any weights are loaded or anything is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    from t5lit.checkpoint import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    return _build(ckpt), ckpt


def _build(ckpt: Mapping):
    from t5lit.checkpoint import model_config, model_weights
    from t5lit.config import ModelConfig
    from t5lit.model.architectures import build_model

    model = build_model(ModelConfig.from_dict(model_config(ckpt)))
    model.load_state_dict(model_weights(ckpt), strict=True)
    return model.eval()


def read_members(paths: Sequence[str | Path], vocab: str | None = None) -> list[dict]:
    """The checkpoints of ensemble members (one path: a single model), checked to decode together (same
    architecture and vocabulary, t5lit/ensemble.py) before any model is built. ``vocab`` stands for a
    checkpoint that records no vocabulary."""
    from t5lit.checkpoint import model_config, read_checkpoint
    from t5lit.config import ModelConfig
    from t5lit.ensemble import check_members

    if not paths:
        raise ConfigError("no checkpoint given")
    ckpts = [read_checkpoint(p) for p in paths]
    check_members([ModelConfig.from_dict(model_config(c)) for c in ckpts], [str(p) for p in paths],
                  [(c.get("datamodule_hyper_parameters") or {}).get("vocab", vocab) for c in ckpts])
    return ckpts


def load_predictor(ckpts: Sequence[Mapping], device=None):
    """``ModelPredictor`` of one checkpoint's model, or of the ensemble of several (``read_members``'s)."""
    from t5lit.ensemble import Ensemble
    from t5lit.evaluator import ModelPredictor

    models = [_build(c) for c in ckpts]
    model = models[0] if len(models) == 1 else Ensemble(models).eval()
    return ModelPredictor(model if device is None else model.to(device))


def checkpoint_settings(ckpt: Mapping, vocab: str = "builtin") -> dict:
    """What a checkpoint records for decoding its tasks: vocab, inputs_length, targets_length (its data
    module's, when it was trained with one) and num_beams, length_penalty_alpha, max_decode_length (its
    module's), with the fallbacks ``t5lit eval`` has always used."""
    hp, data_hp = ckpt.get("hyper_parameters") or {}, ckpt.get("datamodule_hyper_parameters") or {}
    return {"vocab": data_hp.get("vocab", vocab), "inputs_length": data_hp.get("inputs_length", 512),
            "targets_length": data_hp.get("targets_length") or 128, "num_beams": hp.get("num_beams"),
            "length_penalty_alpha": hp.get("length_penalty_alpha", 0.6),
            "max_decode_length": hp.get("max_decode_length", 64)}


def check_positive(**values) -> None:
    """``--name must be a positive integer`` for any given value below 1 (None: not given)."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be a positive integer, got {value}")


def evaluate_checkpoint(ckpt_path: str | Sequence[str], task: str, *, data_dir: str | None = None,
                        vocab: str = "builtin", batch_size: int = 32, max_examples: int | None = None,
                        num_beams: int | None = None, accelerator: str = "auto", inputs_length: int | None = None,
                        targets_length: int | None = None, print_table: bool = True) -> dict[str, dict[str, float]]:
    """Validation scores of ``ckpt_path`` on ``task`` (a task or mixture name), per task and metric. Several
    paths score their ensemble; its decoding settings and lengths are the first checkpoint's."""
    from t5lit.data.mixtures import get_task_or_mixture
    from t5lit.data.vocab import load_vocabulary
    from t5lit.evaluator import EvalSet, Evaluator

    tasks = get_task_or_mixture(task)  # an unknown name fails before the checkpoint is read
    check_positive(batch_size=batch_size, max_examples=max_examples, num_beams=num_beams,
                   inputs_length=inputs_length, targets_length=targets_length)
    paths = [ckpt_path] if isinstance(ckpt_path, (str, Path)) else list(ckpt_path)
    ckpts = read_members(paths, vocab)
    settings = checkpoint_settings(ckpts[0], vocab)
    vocabulary = load_vocabulary(settings["vocab"])
    data = EvalSet.load(tasks, vocabulary, inputs_length=inputs_length or settings["inputs_length"],
                        targets_length=targets_length or settings["targets_length"],
                        max_examples=max_examples, data_dirs=data_dir)
    evaluator = Evaluator(tasks, vocabulary, num_beams=num_beams or settings["num_beams"],
                          length_penalty_alpha=settings["length_penalty_alpha"],
                          max_decode_length=settings["max_decode_length"])
    device = _device(accelerator)
    result = evaluator.evaluate(load_predictor(ckpts, device), data, batch_size, device, progress=print_table)
    scores = result.metrics()
    if print_table:
        print(format_scores(scores))
    return scores


def evaluate_weights(stage_dir: Path | Sequence[Path], weights: str, names: list[str], vocab: str, *, evaluation,
                     inputs_length: tuple[int, int] | int, data_dirs: Mapping[str, str | None] | None = None):
    """The EvalResult of an earlier stage's weights on ``names`` (tasks and mixtures): its ``final.ckpt``, or
    with ``weights="best"`` each task's ``best-<task>.ckpt`` (the stage must have kept them). Several stage
    directories: the ensemble of their weights (each task scored by the ensemble of the members' checkpoints
    for it); every checkpoint must exist before anything is decoded."""
    from t5lit.data.mixtures import get_task_or_mixture
    from t5lit.data.vocab import load_vocabulary
    from t5lit.evaluator import EvalResult, EvalSet, Evaluator

    dirs = [Path(stage_dir)] if isinstance(stage_dir, (str, Path)) else [Path(d) for d in stage_dir]
    lengths = inputs_length if isinstance(inputs_length, tuple) else (inputs_length, 512)
    tasks = list({t.name: t for n in names for t in get_task_or_mixture(n)}.values())
    vocabulary = load_vocabulary(vocab)
    device = _device("auto")
    groups: dict[tuple[Path, ...], list] = {}
    for task in tasks:
        paths = tuple(d / ("final.ckpt" if weights == "final" else f"best-{task.name}.ckpt") for d in dirs)
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"evaluate: {path} not found (the stage keeps final.ckpt when a later stage "
                                  "starts from it, and best-<task>.ckpt per task it validated with "
                                  "keep_best_checkpoints)")
        groups.setdefault(paths, []).append(task)
    if len(dirs) > 1:  # every ensemble checked before anything is decoded (then read again, one at a time)
        for paths in groups:
            read_members(paths, vocab)
    out = EvalResult()
    for paths, group in groups.items():
        data = EvalSet.load(group, vocabulary, inputs_length=lengths[0], targets_length=lengths[1],
                            max_examples=evaluation.max_val_examples, data_dirs=dict(data_dirs or {}))
        evaluator = Evaluator(group, vocabulary, num_beams=evaluation.num_beams,
                              length_penalty_alpha=evaluation.length_penalty_alpha,
                              max_decode_length=evaluation.max_decode_length, num_samples=evaluation.num_samples)
        predictor = load_predictor(read_members(paths, vocab), device)
        out.tasks.update(evaluator.evaluate(predictor, data, evaluation.batch_size or 32, device).tasks)
    return out


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per task, one column per metric."""
    metrics = sorted({m for s in scores.values() for m in s})
    lines = ["| task | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for task in sorted(scores):
        cells = [f"{scores[task][m]:.2f}" if m in scores[task] else "" for m in metrics]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
