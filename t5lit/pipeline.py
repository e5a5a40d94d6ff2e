"""One experiment: pre-train -> fine-tune on each task or mixture -> evaluate -> results.json.

Everything lives in one run directory::

    <run_dir>/config.yaml                 the resolved experiment
    <run_dir>/pretrain/{last.ckpt,done.json}, tensorboard logs under <run_dir>/tb/pretrain
    <run_dir>/finetune/<task>/{last.ckpt,best-<task>.ckpt,scores.json,done.json}
    <run_dir>/results.json                scores per task (best validation checkpoint), summary columns

Started again with the same directory, a run skips the stages marked done and resumes the interrupted one
from its last checkpoint. The paper's "no pre-training" row is ``pretrain: null``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from t5lit.io import atomic_write_json, atomic_write_text
from t5lit.registry import ConfigError

# Summary columns of the paper's tables (Table 1): task name or mixture -> column.
COLUMNS = {"glue": "GLUE", "super_glue": "SGLUE", "cnn_dailymail": "CNNDM", "squad": "SQuAD",
           "wmt14_ende": "EnDe", "wmt14_enfr": "EnFr", "wmt16_enro": "EnRo"}
# The metric the paper reports for single-task columns.
COLUMN_METRIC = {"cnn_dailymail": "rouge2", "squad": "exact_match", "wmt14_ende": "bleu", "wmt14_enfr": "bleu",
                 "wmt16_enro": "bleu"}


class TrialFailed(RuntimeError):
    """The experiment failed for a reason a sweep records (a NaN loss, say); the sweep goes on."""


def _trainer(cfg: dict, stage_dir: Path, tb_name: str, max_steps: int, callbacks: list, **kwargs):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from t5lit.callbacks import NonFiniteLossGuard, ThroughputMonitor

    trainer_cfg = dict(cfg.get("trainer") or {})
    logger = TensorBoardLogger(save_dir=str(stage_dir.parents[0] if tb_name == "pretrain" else stage_dir.parents[1]),
                               name="tb", version=tb_name, default_hp_metric=False)
    return L.Trainer(max_steps=max_steps, logger=logger, enable_model_summary=False,
                     callbacks=[ThroughputMonitor(), NonFiniteLossGuard(), *callbacks], **trainer_cfg, **kwargs)


def _seed(cfg: dict) -> None:
    """Seed the initial weights and dropout of a stage from the experiment's seed (the replicate)."""
    import lightning as L

    L.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)


def _checkpointing(stage_dir: Path, every: int):
    from lightning.pytorch.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=str(stage_dir), filename="step{step}", save_last=True, save_top_k=0,
                           every_n_train_steps=every, save_on_train_epoch_end=False, auto_insert_metric_name=False)


def model_overrides(model: dict) -> dict:
    """The ModelConfig overrides of an experiment's ``model`` section, with ``depth_factor`` applied to the
    preset's depths (Table 2's "6 layers" row is depth_factor 0.5 at every scale)."""
    from t5lit.config import preset_config

    overrides = dict(model.get("overrides") or {})
    factor = float(model.get("depth_factor", 1.0))
    if factor != 1.0:
        cfg = preset_config(model["preset"], arch=model["arch"], **overrides)
        for key in ("num_encoder_layers", "num_decoder_layers"):
            depth = getattr(cfg, key)
            overrides[key] = max(1, round(depth * factor)) if depth else 0
    return overrides


def _module_args(cfg: dict, stage: dict) -> dict:
    model = cfg["model"]
    return dict(preset=model["preset"], arch=model["arch"], model_overrides=model_overrides(model),
                optimizer=stage["optimizer"], lr=stage["lr"], schedule=stage["schedule"],
                warmup_steps=stage["warmup_steps"], z_loss=stage.get("z_loss", 0.0))


def _fit(trainer, module, data, stage_dir: Path) -> None:
    from t5lit.callbacks import NonFiniteLoss

    last = stage_dir / "last.ckpt"
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    except NonFiniteLoss as err:
        raise TrialFailed(str(err)) from None


def pretrain(cfg: dict, run_dir: Path, callbacks=()) -> Path | None:
    """Pre-train (or resume); returns the final checkpoint, or None for the no-pre-training row."""
    p = cfg.get("pretrain")
    if not p:
        return None
    from t5lit.data.datamodule import PretrainDataModule
    from t5lit.lit_module import T5LitModule

    stage_dir = run_dir / "pretrain"
    final = stage_dir / "final.ckpt"
    if (stage_dir / "done.json").exists():
        return final
    data = PretrainDataModule(corpus=p["corpus"], corpus_options=p.get("corpus_options"), vocab=p["vocab"],
                              objective=p["objective"], objective_params=p.get("objective_params"),
                              arch=cfg["model"]["arch"], inputs_length=p["inputs_length"],
                              batch_size=p["batch_size"], max_tokens=p.get("max_tokens"),
                              val_examples=p.get("val_examples", 256), seed=cfg.get("seed", 0),
                              num_workers=p.get("num_workers", 0))
    _seed(cfg)
    module = T5LitModule(**_module_args(cfg, p))
    trainer = _trainer(cfg, stage_dir, "pretrain", p["steps"], [_checkpointing(stage_dir, p["checkpoint_every"]),
                                                                  *callbacks],
                       val_check_interval=min(p["checkpoint_every"], p["steps"]), check_val_every_n_epoch=None)
    _fit(trainer, module, data, stage_dir)
    trainer.save_checkpoint(str(final) + ".tmp")  # on every rank (a collective); global rank 0 writes it
    if trainer.is_global_zero:
        os.replace(str(final) + ".tmp", final)
        atomic_write_json(stage_dir / "done.json", {
            "step": trainer.global_step, "val_loss": float(trainer.callback_metrics.get("val/loss", math.nan))})
    trainer.strategy.barrier("t5lit-pretrain-done")  # the other ranks read final.ckpt next
    return final


def finetune(cfg: dict, run_dir: Path, task: str, init: Path | None, callbacks=()) -> dict:
    """Fine-tune on one task or mixture (or resume); returns BestPerTask's state."""
    from t5lit.callbacks import BestPerTask
    from t5lit.data.datamodule import FinetuneDataModule
    from t5lit.lit_module import T5LitModule

    f = cfg["finetune"]
    stage_dir = run_dir / "finetune" / task
    done = stage_dir / "done.json"
    if done.exists():
        import json

        return json.loads((stage_dir / "scores.json").read_text())
    data_dir = f.get("data_dirs", {}).get(task) if isinstance(f.get("data_dirs"), dict) else None
    data = FinetuneDataModule(tasks=task, vocab=cfg["pretrain"]["vocab"] if cfg.get("pretrain") else f["vocab"],
                              arch=cfg["model"]["arch"], inputs_length=f["inputs_length"],
                              targets_length=f["targets_length"], batch_size=f["batch_size"],
                              pack=f.get("pack", True), mixing=f.get("mixing", "examples_proportional"),
                              mixing_limit=f.get("mixing_limit", 2**19), data_dir=data_dir or f.get("data_dir"),
                              max_val_examples=f.get("max_val_examples"), seed=cfg.get("seed", 0),
                              num_workers=f.get("num_workers", 0))
    _seed(cfg)
    module = T5LitModule(**_module_args(cfg, f), num_beams=f.get("num_beams"),
                         max_decode_length=f.get("max_decode_length", 64), init_from=str(init) if init else None)
    best = BestPerTask(str(stage_dir), keep_checkpoints=f.get("keep_best_checkpoints", True))
    trainer = _trainer(cfg, stage_dir, f"finetune-{task}", f["steps"],
                       [_checkpointing(stage_dir, f["eval_every"]), best, *callbacks],
                       val_check_interval=min(f["eval_every"], f["steps"]), check_val_every_n_epoch=None,
                       num_sanity_val_steps=0)
    _fit(trainer, module, data, stage_dir)
    if trainer.is_global_zero:
        atomic_write_json(done, {"step": trainer.global_step})
    trainer.strategy.barrier("t5lit-finetune-done")
    return best.state_dict()


def summarize(scores: dict[str, dict[str, float]], finetuned: list[str]) -> dict[str, float]:
    """The paper's table columns from per-task scores: GLUE/SGLUE averages, the single-task metrics,
    and, for any other task, the mean of its metrics under the task's own name."""
    from t5lit.metrics import glue_average, super_glue_average

    summary: dict[str, float] = {}
    for name in finetuned:
        if name == "glue":
            summary["GLUE"] = glue_average(scores)
        elif name == "super_glue":
            summary["SGLUE"] = super_glue_average(scores)
        elif name in COLUMN_METRIC and name in scores:
            summary[COLUMNS[name]] = scores[name][COLUMN_METRIC[name]]
        elif name in scores and scores[name]:
            summary[name] = sum(scores[name].values()) / len(scores[name])
    return summary


def run_experiment(cfg: dict, run_dir: str | Path, *, trial=None, callbacks=()) -> dict:
    """Run (or resume) one experiment in ``run_dir``; returns and writes results.json."""
    check_experiment(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / "results.json"
    lead = _is_global_zero()  # with DDP every rank runs this function; rank 0 writes the run's files
    if lead:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    callbacks = list(callbacks)
    if trial is not None:
        from t5lit.callbacks import OptunaPruningCallback

        callbacks.append(OptunaPruningCallback(trial, monitor="val/loss"))
    init = pretrain(cfg, run_dir, callbacks)
    scores: dict[str, dict[str, float]] = {}
    curves: dict[str, list] = {}
    tasks = cfg["finetune"]["tasks"] if cfg.get("finetune") else []
    for task in tasks:
        state = finetune(cfg, run_dir, task, init, callbacks)
        for name, best in state["best"].items():
            scores[name] = best["metrics"]
        for name, hist in state["history"].items():
            key = "loss" if name == "loss" else name
            curves[f"{task}/{key}" if key == "loss" else key] = [[s, sum(m.values()) / len(m)] for s, m in hist]
    results = {"name": cfg.get("name"), "status": "complete", "scores": scores,
               "summary": summarize(scores, tasks), "val_curves": curves}
    if lead:
        _log_hparams(cfg, results, run_dir)
        atomic_write_json(results_path, results)
    return results


def _is_global_zero() -> bool:
    """Global rank 0, or no DDP: torch.distributed once initialised, else the variables Lightning's DDP
    launcher gives the processes it starts (the first process has none until its first fit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return all(int(os.environ.get(key, "0") or 0) == 0 for key in ("RANK", "NODE_RANK", "LOCAL_RANK"))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _log_hparams(cfg: dict, results: dict, run_dir: Path) -> None:
    """The experiment's settings and final scores on TensorBoard's HParams dashboard."""
    from torch.utils.tensorboard import SummaryWriter

    metrics = {f"summary/{k}": float(v) for k, v in results["summary"].items()}
    if not metrics:
        return
    with SummaryWriter(str(run_dir / "tb" / "hparams")) as w:
        w.add_hparams(_flatten(cfg), metrics, run_name=".")


def run_cli(path: str, overrides: list[str], run_dir: str | None) -> dict:
    """``t5lit run FILE [k=v ...] [--run-dir DIR]``: prints the summary table at the end."""
    from t5lit.experiment import load_experiment, parse_cli_overrides

    cfg = load_experiment(path, parse_cli_overrides(overrides))
    out = Path(run_dir) if run_dir else Path("runs") / cfg["name"]
    results = run_experiment(cfg, out)
    if not _is_global_zero():
        return results
    print(f"results: {out / 'results.json'}")
    for column, value in results["summary"].items():
        print(f"  {column:24s} {value:8.2f}")
    return results


def check_experiment(cfg: dict) -> None:
    """Fail early, in one line, on the errors a user can make in an experiment file."""
    for key in ("model", "finetune"):
        if key not in cfg:
            raise ConfigError(f"experiment {cfg.get('name')!r} has no {key!r} section")
