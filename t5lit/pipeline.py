"""One experiment: its plan of stages in order (pre-train, fine-tune on a task or mixture, evaluate) ->
results.json. The stages are data (``Experiment.plan()``, t5lit/schema.py); this module runs any list of them.

Everything lives in one run directory::

    <run_dir>/config.yaml                         the resolved experiment
    <run_dir>/pretrain/{last,final}.ckpt, done.json      the pre-training stage named "pretrain"
    <run_dir>/<kind>/<name>/...                   any other stage: last.ckpt, best-<task>.ckpt, scores.json,
                                                  done.json (final.ckpt when a later stage starts from it)
    <run_dir>/tb/<label>/                         TensorBoard logs per stage (pretrain, finetune-glue, ...)
    <run_dir>/results.json                        scores per task (best validation checkpoint), summary columns

Before anything is created, the whole experiment is checked (t5lit/checks.py). Started again with the same
directory, a run skips the stages marked done and resumes the interrupted one from its last checkpoint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from t5lit.checks import check_experiment
from t5lit.evaluator import headline_score, summarize
from t5lit.io import atomic_write_json
from t5lit.schema import Experiment, Stage


class TrialFailed(RuntimeError):
    """The experiment failed for a reason a sweep records (a NaN loss, say); the sweep goes on."""


def model_overrides(model: dict) -> dict:
    """The ModelConfig overrides of an experiment's ``model`` section (a mapping), with ``depth_factor`` applied
    to the preset's depths (Table 2's "6 layers" row is depth_factor 0.5 at every scale)."""
    from t5lit.schema import ModelSection, build

    return build(ModelSection, model, "model.", None).config_overrides()


def as_experiment(cfg) -> Experiment:
    """The typed experiment of a resolved mapping (``load_experiment``'s, which knows each key's file)."""
    return cfg if isinstance(cfg, Experiment) else Experiment.from_dict(cfg, getattr(cfg, "sources", None))


# ------------------------------------------------------------------------------------------ set-up
def setup_runtime(exp: Experiment) -> None:
    """Process-wide settings of a run: on CPU, keep freed memory between training steps (glibc's malloc), and
    say (rank 0) which CPU fast paths this CPU gets and whether bf16 pays on it."""
    import torch
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

    accelerator = str(exp.trainer.accelerator)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu:
        return
    if exp.runtime.tune_malloc:
        from t5lit.model.cpu import tune_allocator

        tune_allocator()
    from t5lit.model.cpu import plan_fast_paths
    from t5lit.model.cpu_caps import cpu_capabilities

    caps = cpu_capabilities()
    paths = plan_fast_paths().describe() if exp.runtime.cpu_fast_paths else "off (runtime.cpu_fast_paths: false)"
    rank_zero_info(f"CPU {caps.model}, {caps.tier} tier; fast paths: {paths}")
    if str(exp.trainer.precision).startswith("bf16") and not caps.native_bf16:
        rank_zero_warn(f"trainer.precision {exp.trainer.precision} on a CPU without AMX or AVX-512 bf16 "
                       f"({caps.tier} tier): bf16 is emulated there and slower than fp32; consider precision: "
                       "32-true")


def _row_flops(cfg, inputs: int, targets: int) -> float:
    """``ArchSpec.train_flops`` of one row of ``inputs`` + ``targets`` tokens: split between the encoder and the
    decoder, or one stack over both."""
    return (cfg.spec.train_flops(cfg, inputs, targets) if cfg.spec.has_encoder
            else cfg.spec.train_flops(cfg, 0, inputs + targets))


def _seed(exp: Experiment) -> None:
    """Seed the initial weights and dropout of a stage from the experiment's seed (the replicate)."""
    import lightning as L

    L.seed_everything(exp.seed, workers=True, verbose=False)


def _trainer(exp: Experiment, stage: Stage, run_dir: Path, max_steps: int, every: int, callbacks: list,
             before_checkpoint: tuple = (), **kwargs):
    """The stage's Trainer: validation (and ``last.ckpt`` right after it) every ``every`` steps; the
    divergence guard; ``before_checkpoint`` callbacks record a validation before it is checkpointed."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from t5lit.callbacks import NonFiniteLossGuard, StageCheckpoint, ThroughputMonitor

    guard = NonFiniteLossGuard(every=exp.trainer.log_every_n_steps)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version=stage.label, default_hp_metric=False)
    checkpoint = StageCheckpoint(str(run_dir / stage.dir_name), guard)
    # perf/* scalars in every stage; run_dir/progress.json: the step, for `t5lit sweep run`'s progress line
    monitor = ThroughputMonitor(exp.trainer.log_every_n_steps, progress=str(run_dir / "progress.json"),
                                stage=stage.label)
    return L.Trainer(max_steps=max_steps, logger=logger, enable_model_summary=False, enable_checkpointing=False,
                     val_check_interval=min(every, max_steps), check_val_every_n_epoch=None,
                     callbacks=[monitor, guard, *before_checkpoint, checkpoint, *callbacks],
                     **exp.trainer.kwargs(), **kwargs)


def _module(exp: Experiment, stage: Stage, init: Path | None):
    from t5lit.lit_module import T5LitModule

    s, e = stage.settings, exp.evaluation
    method = getattr(s, "method", "full")  # a fine-tuning stage's method (Table 10); pre-training trains all
    overrides = exp.model.config_overrides()
    if method == "adapters":
        overrides["adapter_dim"] = s.adapter_dim
    module = T5LitModule(preset=exp.model.preset, arch=exp.model.arch, model_overrides=overrides,
                         optimizer=s.optimizer, lr=s.lr, schedule=s.schedule, warmup_steps=s.warmup_steps,
                         weight_decay=s.weight_decay, z_loss=s.z_loss, num_beams=e.num_beams,
                         length_penalty_alpha=e.length_penalty_alpha, max_decode_length=e.max_decode_length,
                         compile=_compile_choice(exp, stage), cpu_fast_paths=exp.runtime.cpu_fast_paths,
                         init_from=str(init) if init else None, finetune_method=method)
    if init is None and exp.model.init_from and not _random_init(exp, stage):
        # A stage that starts from no earlier stage starts from the Hugging Face T5 of model.init_from.
        from t5lit.checkpoint import load_hf_init

        load_hf_init(module.model, exp.model.init_from, module.config)
    return module


def _compile_choice(exp: Experiment, stage: Stage) -> bool:
    """runtime.compile, or when it is null the decision of ``t5lit.model.compile_plan.decide_compile`` from the
    stage's steps and batch, printed once per stage (rank 0)."""
    import torch
    from lightning.pytorch.utilities import rank_zero_info

    from t5lit.model.compile_plan import decide_compile
    from t5lit.model.cpu_caps import cpu_capabilities

    s, cfg = stage.settings, exp.model.config()
    accelerator = str(exp.trainer.accelerator)
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    inputs, steps = getattr(s, "inputs_length", 512), getattr(s, "steps", 0)  # an evaluation stage: no steps
    targets = getattr(s, "targets_length", None) or max(1, inputs // 4)  # pre-training: ~1/4 of the inputs
    row = _row_flops(cfg, inputs, targets)
    use, why = decide_compile(exp.runtime.compile, device="cuda" if cuda else "cpu", steps=steps,
                              flops_per_step=row * getattr(s, "batch_size", 1) * exp.trainer.accumulate_grad_batches,
                              precision=str(exp.trainer.precision),
                              layers=cfg.num_encoder_layers + cfg.num_decoder_layers,
                              threads=torch.get_num_threads(), tier=cpu_capabilities().tier)
    rank_zero_info(f"stage {stage.name}: torch.compile {'on' if use else 'off'} ({why})")
    return use


def _random_init(exp: Experiment, stage: Stage) -> bool:
    """The stage asked for fresh weights (``init: random``), not merely had no earlier stage to start from; a
    ``for_each`` stage's instances (``<name>_<entry>``) ask as their stage does."""
    return stage.random_init


def _fit(trainer, module, data, stage_dir: Path) -> None:
    from t5lit.callbacks import NonFiniteLoss

    last = stage_dir / "last.ckpt"
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    except NonFiniteLoss as err:
        raise TrialFailed(str(err)) from None


def _save_final(trainer, stage_dir: Path) -> Path:
    from t5lit.checkpoint import save_trainer_checkpoint

    return save_trainer_checkpoint(trainer, stage_dir / "final.ckpt")  # every rank (a collective), atomically


# ------------------------------------------------------------------------------------------ stages
def pretrain_stage(exp: Experiment, stage: Stage, run_dir: Path, init: Path | None, callbacks=()) -> Path:
    """Pre-train (or resume); returns the final checkpoint."""
    from t5lit.data.datamodule import PretrainDataModule

    p, stage_dir = stage.settings, run_dir / stage.dir_name
    final = stage_dir / "final.ckpt"
    if (stage_dir / "done.json").exists():
        return final
    data = PretrainDataModule(corpus=p.corpus, corpus_options=p.corpus_options, vocab=exp.model.vocab,
                              objective=p.objective, objective_params=p.objective_params, arch=exp.model.arch,
                              inputs_length=p.inputs_length, targets_length=p.targets_length,
                              batch_size=p.batch_size, max_tokens=p.max_tokens, val_examples=p.val_examples,
                              seed=exp.seed, num_workers=p.num_workers, pack=p.pack, lanes=p.lanes,
                              repeats=p.repeats, steps=p.steps)
    _seed(exp)
    module = _module(exp, stage, init)
    trainer = _trainer(exp, stage, run_dir, p.steps, p.checkpoint_every, list(callbacks))
    _fit(trainer, module, data, stage_dir)
    _save_final(trainer, stage_dir)
    if trainer.is_global_zero:
        atomic_write_json(stage_dir / "done.json", {
            "step": trainer.global_step, "val_loss": float(trainer.callback_metrics.get("val/loss", math.nan))})
    trainer.strategy.barrier("t5lit-pretrain-done")  # the other ranks read final.ckpt next
    return final


def _task_dirs(exp: Experiment, stage: Stage) -> dict[str, str | None]:
    """The official-files folder of each task of a stage (``finetune.data_dirs`` by task or mixture, else
    ``finetune.data_dir``; None: the Hugging Face hub)."""
    from t5lit.data.mixtures import task_names

    f = stage.settings if stage.kind == "finetune" else exp.finetune
    default, by_name = (f.data_dir, f.data_dirs) if f is not None else (None, {})
    out: dict[str, str | None] = {}
    for name in stage.task:
        for t in task_names(name):
            out.setdefault(t, by_name.get(t, by_name.get(name, default)))
    return out


def _unsupervised_data(exp: Experiment, stage: Stage) -> dict:
    """What a finetune stage's unsupervised member is made of (the pretrain section's objective on its corpus,
    read in its lanes) and its size in the rates; nothing for a stage without it."""
    from t5lit.data.mixtures import mixture_members

    p = exp.pretrain
    if p is None or not mixture_members(stage.task)[1]:
        return {}
    return dict(unsupervised_size=stage.settings.unsupervised_size, corpus=p.corpus,
                corpus_options=dict(p.corpus_options), objective=p.objective,
                objective_params=dict(p.objective_params), lanes=p.lanes)


def finetune_stage(exp: Experiment, stage: Stage, run_dir: Path, init: Path | None, callbacks=(),
                   keep_final: bool = False) -> dict:
    """Fine-tune on a task or mixture (or resume); returns the scores per task (BestPerTask's state)."""
    import json

    from t5lit.callbacks import BestPerTask
    from t5lit.data.datamodule import FinetuneDataModule

    f, e, stage_dir = stage.settings, exp.evaluation, run_dir / stage.dir_name
    if (stage_dir / "done.json").exists():
        return json.loads((stage_dir / "scores.json").read_text())
    data = FinetuneDataModule(tasks=list(stage.task), vocab=exp.model.vocab, arch=exp.model.arch,
                              inputs_length=f.inputs_length, targets_length=f.targets_length,
                              batch_size=f.batch_size, pack=f.pack, mixing=f.mixing, mixing_limit=f.mixing_limit,
                              temperature=f.temperature, data_dir=_task_dirs(exp, stage),
                              max_val_examples=e.max_val_examples, val_batch_size=e.batch_size,
                              num_samples=e.num_samples, seed=exp.seed, num_workers=f.num_workers,
                              **_unsupervised_data(exp, stage))
    _seed(exp)
    module = _module(exp, stage, init)
    best = BestPerTask(str(stage_dir), keep_checkpoints=f.keep_best_checkpoints)
    callbacks = list(callbacks)
    if f.method == "gradual_unfreezing":  # Table 10: blocks unfrozen from the top on the stage's schedule
        from t5lit.callbacks import GradualUnfreezing

        callbacks.append(GradualUnfreezing(f.steps, f.unfreeze_every))
    trainer = _trainer(exp, stage, run_dir, f.steps, f.eval_every, callbacks, before_checkpoint=(best,),
                       num_sanity_val_steps=0)
    _fit(trainer, module, data, stage_dir)
    if keep_final:
        _save_final(trainer, stage_dir)
    if trainer.is_global_zero:
        atomic_write_json(stage_dir / "done.json", {"step": trainer.global_step})
    trainer.strategy.barrier("t5lit-finetune-done")
    return best.state_dict()


def evaluate_stage(exp: Experiment, stage: Stage, run_dir: Path, source: Stage | list[Stage]) -> dict:
    """Score the weights of an earlier stage (its final weights, or its best checkpoint per task) on the
    stage's tasks with the Evaluator; returns ``{"best": {task: {score, step, metrics}}, "history": {}}``.
    Several sources (the stage's ``members``) are scored as one ensemble (Table 13, t5lit/ensemble.py)."""
    import json

    from t5lit.evaluate import evaluate_weights

    stage_dir = run_dir / stage.dir_name
    if (stage_dir / "done.json").exists():
        return json.loads((stage_dir / "scores.json").read_text())
    sources = source if isinstance(source, list) else [source]
    source_dirs = [run_dir / s.dir_name for s in sources]
    results = evaluate_weights(source_dirs if len(sources) > 1 else source_dirs[0], stage.weights,
                               list(stage.task), exp.model.vocab, evaluation=stage.settings,
                               inputs_length=_lengths(exp, sources[0]), data_dirs=_task_dirs(exp, stage))
    state = {"history": {}, "best": {name: {"score": r.score, "step": None, "metrics": r.metrics,
                                            "num_examples": r.num_examples, "examples": r.examples,
                                            "intervals": r.intervals} for name, r in results.tasks.items()}}
    if _is_global_zero():
        atomic_write_json(stage_dir / "scores.json", state)
        atomic_write_json(stage_dir / "done.json", {"weights": stage.weights, "from": (
            sources[0].name if len(sources) == 1 else [s.name for s in sources])})
    return state


def _lengths(exp: Experiment, source: Stage) -> tuple[int, int]:
    s = source.settings
    if source.kind == "finetune":
        return s.inputs_length, s.targets_length
    f = exp.finetune
    return (f.inputs_length, f.targets_length) if f is not None else (s.inputs_length, s.inputs_length)


# ------------------------------------------------------------------------------------------ the run
def run_experiment(cfg, run_dir: str | Path, *, trial=None, callbacks=(), only: list[str] | None = None,
                   restart: bool = False) -> dict:
    """Run (or resume) one experiment in ``run_dir``; returns and writes results.json.

    The whole experiment is checked first (nothing is created if it fails); a run directory that holds another
    config is refused unless ``restart`` (t5lit/rundir.py). ``only``: run just these stages (``t5lit fit``);
    the stages they start from must have run already. Every attempt is recorded in ``attempts.json``."""
    from t5lit.rundir import attempt, claim

    exp = as_experiment(cfg)
    run_dir = Path(run_dir)
    check_experiment(exp, run_dir)  # before anything is created
    plan = exp.plan()
    if only is not None:
        _check_only(plan, only, run_dir)
    lead = _is_global_zero()  # with DDP every rank runs this function; rank 0 writes the run's files
    claim(run_dir, exp, restart=restart, lead=lead)
    setup_runtime(exp)
    callbacks = list(callbacks)
    if trial is not None:
        from t5lit.callbacks import OptunaPruningCallback

        callbacks.append(OptunaPruningCallback(trial, monitor="val/loss"))
    with attempt(run_dir, lead=lead, what="run" if only is None else "stages " + ", ".join(only)):
        states = _run_stages(exp, plan, run_dir, callbacks, only)
        if only is not None:
            return {"name": exp.name, "status": "complete", "stages": list(only)}
        results = collect_results(exp, plan, states)
        if lead:
            _log_hparams(exp, results, run_dir)
            atomic_write_json(run_dir / "results.json", results)
    return results


def _run_stages(exp: Experiment, plan: list[Stage], run_dir: Path, callbacks: list, only) -> dict[str, dict]:
    starts_from = {s.init for s in plan if s.init} | {m for s in plan for m in s.members}
    states: dict[str, dict] = {}
    by_name = {s.name: s for s in plan}
    for stage in plan:
        init = (run_dir / by_name[stage.init].dir_name / "final.ckpt") if stage.init else None
        if only is not None and stage.name not in only:
            continue
        # a replica trains with a seed of its own (weights, data order, dropout): Table 13's separate models
        stage_exp = exp if stage.replica == 0 else exp.replace(seed=stage.seed(exp.seed))
        if stage.kind == "pretrain":
            pretrain_stage(stage_exp, stage, run_dir, init, callbacks)
        elif stage.kind == "finetune":
            states[stage.name] = finetune_stage(stage_exp, stage, run_dir, init, callbacks,
                                                keep_final=stage.name in starts_from)
        else:
            sources = [by_name[m] for m in stage.members] if stage.members else by_name[stage.init]
            states[stage.name] = evaluate_stage(exp, stage, run_dir, sources)
    return states


def _check_only(plan: list[Stage], only: list[str], run_dir: Path) -> None:
    from t5lit.registry import ConfigError, unknown_name_message

    names = [s.name for s in plan]
    for name in only:
        if name not in names:
            raise ConfigError(unknown_name_message("stage", name, names))
        stage = plan[names.index(name)]
        if stage.init and stage.init not in only:
            init = plan[names.index(stage.init)]
            if not (run_dir / init.dir_name / "final.ckpt").is_file():
                raise ConfigError(f"stage {name!r} starts from stage {stage.init!r}, which has not run in {run_dir}; "
                                  f"run it first, or give the stage init: random")


def collect_results(exp: Experiment, plan: list[Stage], states: dict[str, dict]) -> dict:
    """results.json from the stages' scores: per task the best validation scores (a later stage's scores of a
    task replace an earlier one's), the paper's summary columns, and the validation curves."""
    from t5lit.data.tasks import TASKS

    scores: dict[str, dict[str, float]] = {}
    curves: dict[str, list] = {}
    examples: dict[str, dict] = {}
    intervals: dict[str, dict] = {}
    for stage in plan:
        state = states.get(stage.name)
        if state is None:
            continue
        for name, best in state["best"].items():
            scores[name] = best["metrics"]
            examples.pop(name, None)  # a later stage's scores replace an earlier one's, with their examples
            intervals.pop(name, None)
            if best.get("examples"):
                examples[name] = best["examples"]
            if best.get("intervals"):
                intervals[name] = best["intervals"]
        for name, hist in state["history"].items():
            if name == "loss":
                curves[f"{stage.name}/loss"] = [[s, m["loss"]] for s, m in hist]
            elif name in TASKS:
                task = TASKS.get(name)
                curves[name] = [[s, headline_score(task, m)] for s, m in hist]
    return {"name": exp.name, "status": "complete", "scores": scores,
            "summary": summarize(scores, exp.reported_tasks()), "val_curves": curves,
            "reported": exp.reported_tasks(), "cost": run_cost(exp, plan), "intervals": intervals,
            "examples": examples}


def _is_global_zero() -> bool:
    """Global rank 0, or no DDP: torch.distributed once initialised, else the variables Lightning's DDP
    launcher gives the processes it starts (the first process has none until its first fit), torchrun's, and
    SLURM's task rank when Lightning takes its ranks from SLURM (srun-started tasks of a job not named
    "bash" or "interactive": ``SLURMEnvironment.detect``'s rule, without its warning)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    keys = ["RANK", "NODE_RANK", "LOCAL_RANK"]
    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        keys.append("SLURM_PROCID")
    return all(int(os.environ.get(key, "0") or 0) == 0 for key in keys)


def _log_hparams(exp: Experiment, results: dict, run_dir: Path) -> None:
    """The run's session on TensorBoard's HParams dashboard (t5lit/hparams.py), in ``<run_dir>/tb/``: the
    experiment's settings (every key, flattened: a sweep's runs share them, so the dashboard shows its variants
    side by side), and its final numbers: the summary columns and their Average, each task's headline score and
    metrics, the run's cost and its wall time (from its TensorBoard event files). The stages' logs are the
    session's sub-runs; a sweep declares the experiment of its sessions once (t5lit/sweep/report.py)."""
    from t5lit.hparams import flatten, session_group, write_session

    metrics = hparam_metrics(results)
    if not metrics:
        return
    wall = wall_time(run_dir)
    if wall is not None:
        metrics["cost/wall_time_s"] = wall
    write_session(run_dir / "tb", flatten(exp.to_dict()), metrics, group=session_group(run_dir))


def run_cli(path: str, overrides: list[str], run_dir: str | None, restart: bool = False) -> dict:
    """``t5lit run FILE [k=v ...] [--run-dir DIR] [--restart]``: prints the summary table at the end."""
    from t5lit.experiment import parse_cli_overrides, resolve_experiment

    exp = resolve_experiment(path, parse_cli_overrides(overrides))
    out = Path(run_dir) if run_dir else Path("runs") / exp.name
    results = run_experiment(exp, out, restart=restart)
    if not _is_global_zero():
        return results
    print(f"results: {out / 'results.json'}")
    for column, value in results["summary"].items():
        print(f"  {column:24s} {value:8.2f}")
    return results


# ------------------------------------------------------------------------------------------ cost and scores
def run_cost(exp: Experiment, plan: list[Stage] | None = None) -> dict:
    """What a run costs beside what it scores (the paper's P and M of Table 2, and more):

    parameters: the model's unique parameters (built on the meta device: no memory, no time);
    flops_per_token: training FLOPs (forward + backward matmuls, ``ArchSpec.train_flops``) per token of a row
    of n input and n target tokens, n the pre-training inputs_length (an L+L encoder-decoder and an L-layer
    decoder-only model cost the same per token: the paper's M);
    pretrain_tokens / finetune_tokens: steps x batch_size x inputs_length x devices of those stages (the paper's
    count: 2^19 x 128 x 512 = 2^35); train_flops: flops_per_token x all training tokens.
    """
    import torch

    from t5lit.model.architectures import build_model, count_parameters

    cfg = exp.model.config()
    with torch.device("meta"):
        parameters = count_parameters(build_model(cfg))
    n = exp.pretrain.inputs_length if exp.pretrain is not None else (
        exp.finetune.inputs_length if exp.finetune is not None else 512)
    flops = _row_flops(cfg, n, n)
    devices = exp.trainer.devices if isinstance(exp.trainer.devices, int) and exp.trainer.devices > 0 else 1
    tokens = {"pretrain": 0, "finetune": 0}
    for stage in plan if plan is not None else exp.plan():
        if stage.kind in tokens:
            s = stage.settings
            tokens[stage.kind] += s.steps * s.batch_size * s.inputs_length * devices
    per_token = flops / (2 * n)
    return {"parameters": parameters, "flops_per_token": per_token, "pretrain_tokens": tokens["pretrain"],
            "finetune_tokens": tokens["finetune"], "train_tokens": tokens["pretrain"] + tokens["finetune"],
            "train_flops": per_token * (tokens["pretrain"] + tokens["finetune"])}


def hparam_metrics(results: dict) -> dict[str, float]:
    """The final numbers of a run for the HParams dashboard: summary/<column> (and summary/Average with two
    columns or more), score/<task>, metric/<task>/<metric>, cost/<what> (``t5lit.hparams.run_metrics``)."""
    from t5lit.hparams import run_metrics

    return run_metrics(results)


def wall_time(run_dir: Path) -> float | None:
    """Seconds the run's stages have run, from its TensorBoard event files: each is named with the time it
    was created and last written when its stage last logged (a resumed stage adds a file). None without any."""
    total, found = 0.0, False
    for path in Path(run_dir, "tb").rglob("events.out.tfevents.*"):
        if path.parent == Path(run_dir, "tb") or path.parent.name == "hparams":
            continue  # the HParams session (written at the end), not a stage
        try:
            started = float(path.name.split(".")[3])
            total += max(0.0, path.stat().st_mtime - started)
            found = True
        except (IndexError, ValueError, OSError):
            continue
    return total if found else None

