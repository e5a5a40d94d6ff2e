"""The experiment, typed: one dataclass per section, each field's default here and nowhere else, its checks in
``__post_init__``, and the stages of a run as data.

    name: baseline            # top level: name, description, seed, scale (t5lit/experiment.py)
    model: {...}              # ModelSection: preset, arch, overrides, depth_factor, vocab
    pretrain: {...} | null    # PretrainSection: the settings of pre-training stages (null: no pre-training)
    finetune: {...} | null    # FinetuneSection: the settings of fine-tuning stages; `tasks` makes the default plan
    evaluation: {...}         # EvaluationSection: decoding and scoring in every validation and evaluate stage
    trainer: {...}            # TrainerSection: lightning.Trainer arguments (devices, precision, strategy, ...)
    runtime: {...}            # RuntimeSection: compilation, CPU fast paths, allocator tuning
    stages: null | [...]      # the plan; null: pre-train (if set), then fine-tune on each of finetune.tasks

A stage is ``{name, kind: pretrain | finetune | evaluate, init, task, weights, <section keys>}``: a
pre-training or fine-tuning stage takes its section's settings with its own keys over them; ``init`` names
the earlier stage whose final weights it starts from (absent: the last pre-training stage before it;
``random``: fresh weights); ``task`` is a task, a mixture or a list trained (or evaluated) together. Multi-task
training, multi-task pre-training then fine-tuning, leave-one-out are stage lists, not new code; the keys that
make them (Sections 3.5.3 and 3.6; ``Experiment.plan``):

    task: finetune.tasks          # that list (so a scale's or a sweep's tasks apply); unsupervised: the objective
    for_each: task | leave_one_out   # one stage per entry, on it alone / on every other entry: <name>_<entry>
    leave_out: [squad]            # the task list without these tasks (or mixtures)
    train_like: pretrain          # a finetune stage with pre-training's steps, batch size and schedule
    replica: 1                    # an independent replicate (its own seed): ensembles of separate models
    members: [a, b, c, d]         # an evaluate stage scoring the ensemble of these stages' weights

Values arrive as YAML 1.2 (``1e-4`` is a float). ``Experiment.from_dict(data, sources)`` types and checks
every value; an error is one line naming the file (from ``sources``) and the key. Derived values
(``ModelSection.config()``, ``Experiment.plan()``) are computed, never written back into the config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from t5lit.registry import ConfigError, check_name, unknown_name_message

UNSUPERVISED = "unsupervised"  # t5lit.data.mixtures.UNSUPERVISED: the pre-training objective as a mixture member

STAGE_KINDS = ("pretrain", "finetune", "evaluate")
RANDOM_INIT = "random"
TASKS_REF = "finetune.tasks"  # in a stage's task list: every entry of finetune.tasks
FOR_EACH = ("task", "leave_one_out")  # a stage per entry: on it alone, or on every other entry
TRAIN_LIKE = ("pretrain",)
# The training keys `train_like: pretrain` takes from the pretrain section (and eval_every <- checkpoint_every).
PRETRAIN_SCHEDULE = ("steps", "batch_size", "optimizer", "lr", "schedule", "warmup_steps", "weight_decay", "z_loss")
REPLICA_SEED_STRIDE = 1_000_003  # replica r of a stage trains with seed + r * this
OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("inverse_sqrt", "constant", "cosine", "linear")
MIXING = ("examples_proportional", "temperature", "equal")
FINETUNE_METHODS = ("full", "adapters", "gradual_unfreezing")  # Section 3.5.1, Table 10
# lightning.Trainer arguments each stage sets itself (from its steps, checkpoint_every, directories).
STAGE_OWNED_TRAINER_ARGS = {
    "max_steps": "pretrain.steps / finetune.steps", "min_steps": "pretrain.steps / finetune.steps",
    "max_epochs": "pretrain.steps / finetune.steps", "min_epochs": "pretrain.steps / finetune.steps",
    "max_time": "pretrain.steps / finetune.steps",
    "val_check_interval": "pretrain.checkpoint_every / finetune.eval_every",
    "check_val_every_n_epoch": "pretrain.checkpoint_every / finetune.eval_every",
    "callbacks": "run_experiment(callbacks=...)", "logger": "the run directory's tb/",
    "default_root_dir": "the run directory (t5lit run --run-dir)", "enable_checkpointing": "the stage",
    "num_sanity_val_steps": "the stage"}


class FieldError(ConfigError):
    """A bad value of one field; ``key`` is its path within the section that raised it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# ------------------------------------------------------------------------------------------ value checks
def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def need(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise FieldError(key, message)


def positive_int(obj, *names: str, least: int = 1) -> None:
    for name in names:
        v = getattr(obj, name)
        need(v is None or v >= least, name, f"{name} must be an integer >= {least}, got {v!r}")


def choice(key: str, value, valid) -> None:
    need(value in valid, key, unknown_name_message(key, value, list(valid)))


def registered(key: str, value: str, registry) -> None:
    """``value`` must be a name of ``registry`` (the message lists the valid names and the closest)."""
    try:
        registry.get(value)
    except ConfigError as err:
        raise FieldError(key, str(err)) from None


# ------------------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class ModelSection:
    """The model (paper Section 3.1.1; Table 2 for the architectures; Table 13 for sizes)."""

    preset: str = "t5-base"  # t5lit list presets
    arch: str = "encoder_decoder"  # t5lit list architectures
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields, e.g. {share_encoder_decoder: true}
    depth_factor: float = 1.0  # scales the preset's depths: 0.5 is Table 2's "6 layers" row at any scale
    vocab: str = "spiece.model"  # "builtin", "builtin:<pieces>" or a SentencePiece .model (Section 2.4)
    # A Hugging Face T5 whose weights start the first training stage (fine-tune it, or continue pre-training):
    # a local directory written by transformers or `t5lit export-hf`, or a hub name (google-t5/t5-base,
    # google/t5-v1_1-base). Its config must match preset + overrides (t5-base; t5.1.1-base for T5 1.1).
    init_from: str | None = None

    def __post_init__(self):
        from t5lit.config import PRESETS

        registered("preset", self.preset, PRESETS)
        need(self.depth_factor > 0, "depth_factor", f"depth_factor must be > 0, got {self.depth_factor}")
        need(bool(self.vocab), "vocab", "vocab must name a vocabulary: builtin, builtin:<pieces> or a .model path")
        need(self.init_from is None or (isinstance(self.init_from, str) and bool(self.init_from)), "init_from",
             "init_from must be a Hugging Face T5 directory or hub name")
        need(self.init_from is None or self.arch == "encoder_decoder", "init_from",
             f"init_from loads a Hugging Face T5, an encoder_decoder; arch is {self.arch}")
        try:
            self.config()
        except FieldError:
            raise
        except ConfigError as err:
            raise FieldError("arch" if str(err).startswith("unknown arch") else "overrides", str(err)) from None

    def config_overrides(self) -> dict:
        """The ModelConfig overrides, with ``depth_factor`` applied to the preset's depths."""
        from t5lit.config import preset_config

        overrides = dict(self.overrides)
        if self.depth_factor != 1.0:
            cfg = preset_config(self.preset, arch=self.arch, **overrides)
            for key in ("num_encoder_layers", "num_decoder_layers"):
                depth = getattr(cfg, key)
                overrides[key] = max(1, round(depth * self.depth_factor)) if depth else 0
        return overrides

    def config(self):
        """The ModelConfig this section describes (derived on each call; nothing is stored)."""
        from t5lit.config import preset_config

        return preset_config(self.preset, arch=self.arch, **self.config_overrides())


class _Optimized:
    """The checks of the fields every training stage has (batch_size, steps, optimizer, lr, schedule, ...)."""

    def _check_optimization(self):
        positive_int(self, "batch_size", "steps")
        positive_int(self, "warmup_steps", "num_workers", least=0)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        need(self.lr > 0, "lr", f"lr must be a number > 0, got {self.lr}")
        need(self.weight_decay >= 0, "weight_decay", f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.z_loss >= 0, "z_loss", f"z_loss must be >= 0, got {self.z_loss}")


@dataclass(frozen=True)
class PretrainSection(_Optimized):
    """Pre-training (Section 3.1.2): an objective on a corpus, AdaFactor at 1/sqrt(max(step, 10^4)), 2^19 steps."""

    corpus: str = "c4"  # t5lit list corpora (Table 8's data sets, mixtures: t5lit/data/corpora.py)
    corpus_options: dict[str, Any] = field(default_factory=dict)  # e.g. {paths: data/*.txt} for `files`
    # null: documents streamed, tokenized and made into examples in the DataLoader workers (any corpus size); a
    # number: the corpus's first max_tokens tokens, tokenized once into the token cache and repeated (Table 9)
    max_tokens: int | None = None
    repeats: float | None = None  # instead of max_tokens: max_tokens = steps x batch x devices x inputs_length / this
    objective: str = "iid_denoising"  # the study's baseline, 15% i.i.d. (Section 3.1.4); t5lit list objectives
    objective_params: dict[str, Any] = field(default_factory=dict)  # the objective's parameters
    pack: bool = True  # several examples per row, told apart by segment ids (Section 3.1.2)
    lanes: int = 64  # the streams the corpus is read in: a multiple of devices x num_workers; the order depends on it
    inputs_length: int = 512  # encoder length; the chunk and targets lengths follow from the objective
    targets_length: int | None = None  # pad targets to this (at least the objective's); null: the objective's
    batch_size: int = 128  # rows per device: 128 x 512 tokens (Section 3.1.2)
    steps: int = 2**19  # about 34B tokens
    optimizer: str = "adafactor"  # adafactor | adamw
    lr: float = 0.01  # with inverse_sqrt and 10^4 warmup steps: 1/sqrt(max(step, 10^4))
    schedule: str = "inverse_sqrt"  # inverse_sqrt | constant | cosine | linear
    warmup_steps: int = 10_000  # inverse_sqrt: the constant-lr period; others: a linear ramp
    weight_decay: float = 0.0
    z_loss: float = 0.0  # weight of PaLM's log(Z)^2 auxiliary loss
    checkpoint_every: int = 5000  # a checkpoint and val/loss every this many steps
    val_examples: int = 1024  # held-out examples for val/loss
    num_workers: int = 4  # DataLoader worker processes

    def __post_init__(self):
        from t5lit.data.sources import CORPORA, check_corpus_options
        from t5lit.objectives import budget, get_objective

        self._check_optimization()
        positive_int(self, "checkpoint_every", "val_examples", "max_tokens", "lanes")
        positive_int(self, "inputs_length", least=2)
        need(self.repeats is None or self.repeats > 0, "repeats", f"repeats must be a number > 0, got {self.repeats}")
        need(self.repeats is None or self.max_tokens is None, "repeats",
             "give max_tokens (the corpus's size) or repeats (how often pre-training sees it), not both")
        registered("corpus", self.corpus, CORPORA)
        try:
            check_corpus_options(self.corpus, self.corpus_options)
        except ConfigError as err:
            raise FieldError("corpus_options", str(err)) from None
        registered("objective", self.objective, _objectives())
        try:
            objective = get_objective(self.objective, **self.objective_params)
        except ConfigError as err:
            raise FieldError("objective_params", str(err)) from None
        try:
            budget(objective, self.inputs_length, self.targets_length)
        except ConfigError as err:
            raise FieldError("targets_length" if self.targets_length else "inputs_length", str(err)) from None


def _objectives():
    from t5lit.objectives import OBJECTIVES

    return OBJECTIVES


@dataclass(frozen=True)
class FinetuneSection(_Optimized):
    """Fine-tuning (Section 3.1.3): constant lr 1e-3, 2^18 steps, a checkpoint every 5,000, the best reported."""

    # Each entry is one fine-tuning run from the pre-trained weights (GLUE and SuperGLUE each as one mixture).
    tasks: list[str] = field(default_factory=lambda: ["glue", "super_glue", "cnn_dailymail", "squad", "wmt14_ende",
                                                      "wmt14_enfr", "wmt16_enro"])
    data_dir: str | None = None  # the official files, for every task (default: the Hugging Face hub)
    data_dirs: dict[str, str] = field(default_factory=dict)  # per task or mixture, e.g. {glue: /data/glue_data}
    inputs_length: int = 512
    targets_length: int = 512
    pack: bool = True
    mixing: str = "examples_proportional"  # examples_proportional | temperature | equal (Section 3.5.2)
    mixing_limit: int | None = 2**19  # K
    temperature: float = 1.0  # T, for mixing: temperature
    # The unsupervised member's size in the rates, when a stage mixes it in (t5lit/data/mixtures.py); null:
    # unlimited, so it counts K (Section 3.5.2); Section 3.7 sets 710k (Small) ... 133M (11B) examples.
    unsupervised_size: int | None = None
    batch_size: int = 128  # rows per device, 128 x 512 with packing
    steps: int = 2**18
    optimizer: str = "adafactor"
    lr: float = 0.001  # constant 1e-3 (Section 3.1.3)
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    z_loss: float = 0.0
    eval_every: int = 5000  # a checkpoint and a validation every this many steps
    keep_best_checkpoints: bool = True  # keep best-<task>.ckpt per task
    num_workers: int = 2
    # Which parameters train (Section 3.5.1, Table 10): full = all; adapters = an adapter layer of inner width
    # adapter_dim after every block's FFN, and only the adapters and layer norms train; gradual_unfreezing =
    # blocks unfrozen from the top, encoder and decoder in parallel, a new one every unfreeze_every steps.
    method: str = "full"  # full | adapters | gradual_unfreezing
    adapter_dim: int | None = None  # adapters: the inner width d (the paper's 32, 128, 512, 2048)
    unfreeze_every: int | None = None  # gradual_unfreezing: steps per new block; null: steps / blocks (2^18/12)

    def __post_init__(self):
        self._check_optimization()
        positive_int(self, "inputs_length", "targets_length", "eval_every", "mixing_limit")
        choice("mixing", self.mixing, MIXING)
        need(self.temperature > 0, "temperature", f"temperature must be > 0, got {self.temperature}")
        positive_int(self, "unsupervised_size")
        for i, name in enumerate(self.tasks):
            _task_or_mixture(f"tasks[{i}]", name)
        for name in self.data_dirs:
            _task_or_mixture(f"data_dirs.{name}", name)
        self._check_method()

    def _check_method(self):
        """The fine-tuning method and its own settings; t5lit/checks.py checks them against the model."""
        choice("method", self.method, FINETUNE_METHODS)
        positive_int(self, "adapter_dim", "unfreeze_every")
        need(self.method != "adapters" or self.adapter_dim is not None, "method",
             "method adapters needs adapter_dim, the inner width d of every adapter (the paper's 32, 128, 512 or "
             "2048)")
        for key, method in (("adapter_dim", "adapters"), ("unfreeze_every", "gradual_unfreezing")):
            need(self.method == method or getattr(self, key) is None, key,
                 f"{key} applies to method {method}, not {self.method}; set {key}: null")


def _task_or_mixture(key: str, name) -> None:
    from t5lit.data.mixtures import task_names

    try:
        task_names(name)
    except ConfigError as err:
        raise FieldError(key, str(err)) from None


@dataclass(frozen=True)
class EvaluationSection:
    """Decoding and scoring of validation and evaluate stages (the study decodes greedily, Section 3.1.3)."""

    num_beams: int | None = 1  # null: each task's own (beam 4, alpha 0.6 for WMT and CNN/DM, as T5)
    length_penalty_alpha: float = 0.6
    max_decode_length: int = 128
    max_val_examples: int | None = None  # per task; null: every validation example
    batch_size: int | None = None  # decoding batch; null: the stage's batch_size
    num_samples: int = 5  # (input, prediction, target) samples per task to TensorBoard

    def __post_init__(self):
        positive_int(self, "num_beams", "max_decode_length", "max_val_examples", "batch_size")
        positive_int(self, "num_samples", least=0)
        need(self.length_penalty_alpha >= 0, "length_penalty_alpha",
             f"length_penalty_alpha must be >= 0, got {self.length_penalty_alpha}")


PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


@dataclass(frozen=True)
class TrainerSection:
    """lightning.Trainer arguments. The common ones are typed here; any other Trainer argument may be given
    too (checked against Trainer's signature) and lands in ``extra``. Stage-owned ones are refused."""

    accelerator: str = "auto"
    devices: Any = 1  # a count, "auto", or a list of device ids
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "bf16-mixed"
    log_every_n_steps: int = 50
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    enable_progress_bar: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        positive_int(self, "num_nodes", "log_every_n_steps", "accumulate_grad_batches")
        need(str(self.precision) in PRECISIONS, "precision",
             unknown_name_message("precision", self.precision, list(PRECISIONS)))
        ok = (self.devices == "auto" or (isinstance(self.devices, int) and not isinstance(self.devices, bool)
                                         and self.devices >= -1 and self.devices != 0)
              or (isinstance(self.devices, list) and all(isinstance(d, int) and d >= 0 for d in self.devices))
              or (isinstance(self.devices, str) and self.devices.replace(",", "").strip().isdigit()))
        need(ok, "devices", f"devices must be a positive count, -1, 'auto' or a list of ids, got {self.devices!r}")

    def kwargs(self) -> dict:
        """The keyword arguments for ``lightning.Trainer``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        return {**out, **self.extra}

    @classmethod
    def split(cls, data: Mapping, prefix: str, sources: Mapping | None) -> dict:
        """``data`` with the untyped Trainer arguments moved under ``extra`` (checked against Trainer)."""
        typed = {f.name for f in fields(cls)}
        out, extra = {}, dict(data.get("extra") or {})
        for key, value in data.items():
            if key in typed:
                out[key] = value
                continue
            where = _where(sources, f"{prefix}{key}")
            if key in STAGE_OWNED_TRAINER_ARGS:
                raise ConfigError(f"{where}{prefix}{key} is set by each stage; use {STAGE_OWNED_TRAINER_ARGS[key]}")
            valid = trainer_arguments()
            if key not in valid:
                raise ConfigError(where + unknown_name_message("key", key, sorted(typed - {"extra"}) + [
                    "(any other lightning.Trainer argument)"], f"under '{prefix[:-1]}'"))
            extra[key] = value
        if extra:
            out["extra"] = extra
        return out


def trainer_arguments() -> list[str]:
    import inspect

    import lightning

    return [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]


@dataclass(frozen=True)
class RuntimeSection:
    """How the model runs, not what it computes."""

    compile: bool | None = None  # torch.compile the model; null: on CUDA, on CPU when the stage is long enough
    cpu_fast_paths: bool = True  # the CPU fast paths chosen for this CPU (T5LIT_CPU_FAST_PATHS overrides)
    tune_malloc: bool = True  # keep freed memory between CPU training steps (T5LIT_TUNE_MALLOC=0 also turns it off)


# ------------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class StageSpec:
    """One entry of ``stages:`` as written: name, kind, init, task, weights, and the section keys it changes."""

    name: str
    kind: str
    init: str | None = None  # an earlier stage; "random": fresh weights; absent: the last pre-training stage
    # finetune / evaluate: tasks and mixtures, together; "finetune.tasks" stands for that list, "unsupervised"
    # for the pre-training objective mixed in (t5lit/data/mixtures.py)
    task: list[str] = field(default_factory=list)
    weights: str = "final"  # evaluate: "final" weights of `init`, or its "best" checkpoint per task
    for_each: str | None = None  # task | leave_one_out: one stage per entry of `task`, named <name>_<entry>
    leave_out: list[str] = field(default_factory=list)  # finetune: tasks or mixtures taken out of `task`
    members: list[str] = field(default_factory=list)  # evaluate: the stages whose weights decode as an ensemble
    train_like: str | None = None  # finetune: "pretrain" trains with pre-training's steps, batch and schedule
    replica: int = 0  # pretrain / finetune: 1, 2, ...: an independent replicate (its own seed) of the stage
    settings: dict[str, Any] = field(default_factory=dict)  # keys of the kind's section, over it

    META = ("name", "kind", "init", "task", "weights", "for_each", "leave_out", "members", "train_like", "replica")

    def __post_init__(self):
        try:
            check_name("stage name", self.name)
        except ConfigError as err:
            raise FieldError("name", str(err)) from None
        choice("kind", self.kind, STAGE_KINDS)
        choice("weights", self.weights, ("final", "best"))
        need(self.kind == "pretrain" or bool(self.task), "task",
             f"a {self.kind} stage needs task: a task, a mixture or a list of them")
        need(self.kind != "pretrain" or not self.task, "task", "a pretrain stage takes no task (use objective)")
        for i, name in enumerate(self.task):
            if name != TASKS_REF:
                _task_or_mixture(f"task[{i}]", name)
        self._check_strategy()

    def _check_strategy(self):
        """The keys that make training strategies (Section 3.5.3) and ensembles (Section 3.6) of stages."""
        if self.for_each is not None:
            choice("for_each", self.for_each, FOR_EACH)
            need(self.kind != "pretrain", "for_each", "a pretrain stage has no tasks to run for_each")
        for key, kind in (("leave_out", "finetune"), ("members", "evaluate"), ("train_like", "finetune")):
            need(not getattr(self, key) or self.kind == kind, key, f"{key} applies to {kind} stages, not {self.kind}")
        for i, name in enumerate(self.leave_out):
            _task_or_mixture(f"leave_out[{i}]", name)
        for i, name in enumerate(self.members):
            need(name != RANDOM_INIT, f"members[{i}]", "ensemble members are earlier training stages, not random")
        if self.train_like is not None:
            choice("train_like", self.train_like, TRAIN_LIKE)
        positive_int(self, "replica", least=0)
        need(self.replica == 0 or self.kind != "evaluate", "replica",
             "replica applies to training stages (an evaluate stage trains nothing)")


@dataclass(frozen=True)
class Stage:
    """A stage of the plan, resolved: its section's settings with the stage's own keys applied."""

    name: str
    kind: str
    init: str | None  # the stage whose weights start this one, or None for fresh weights
    task: tuple[str, ...] = ()
    weights: str = "final"
    settings: PretrainSection | FinetuneSection | EvaluationSection | None = None
    members: tuple[str, ...] = ()  # evaluate: the stages whose weights it ensembles (init is the first)
    replica: int = 0  # training stages: 0 runs with the experiment's seed, others with their own
    random_init: bool = False  # ``init: random`` asked for fresh weights (not model.init_from's when it is set)

    def seed(self, experiment_seed: int) -> int:
        """The seed the stage trains with: the experiment's, or for replica r > 0 a seed of its own (the same
        for the same experiment seed and r, distinct from every other replica's)."""
        return experiment_seed if self.replica == 0 else experiment_seed + REPLICA_SEED_STRIDE * self.replica

    @property
    def label(self) -> str:
        """The TensorBoard version and the stage's label in curves: ``pretrain``, ``finetune-glue``."""
        return self.kind if self.name == self.kind else f"{self.kind}-{self.name}"

    @property
    def dir_name(self) -> str:
        """Its folder in the run directory: ``pretrain`` for the default pre-training, else ``<kind>/<name>``."""
        return self.kind if self.name == self.kind else f"{self.kind}/{self.name}"


# ------------------------------------------------------------------------------------------ the experiment
@dataclass(frozen=True)
class Experiment:
    """One experiment: the sections, and the stages that run (see the module docstring)."""

    name: str = "experiment"
    description: str = ""
    seed: int = 0  # the replicate: seeds weights, data order, every example and dropout mask
    resolved_scale: str = "paper"  # the scale the file was resolved at (t5lit/experiment.py SCALES)
    model: ModelSection = field(default_factory=ModelSection)
    pretrain: PretrainSection | None = field(default_factory=PretrainSection)
    finetune: FinetuneSection | None = field(default_factory=FinetuneSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    stages: list[StageSpec] | None = None

    def __post_init__(self):
        try:
            check_name("experiment name", self.name)
        except ConfigError as err:
            raise FieldError("name", str(err)) from None
        positive_int(self, "seed", least=0)
        plan = self.plan()  # every stage resolves: names, kinds, inits and settings
        need(bool(plan), "stages", "the experiment runs no stage: set pretrain, finetune.tasks or stages")

    # -- the plan ------------------------------------------------------------------------------------------
    def plan(self) -> list[Stage]:
        """The stages in order, each with its resolved settings (derived from the config on every call).

        A ``for_each`` stage is expanded where it stands into one stage per entry of its task list (named
        ``<name>_<entry>``); a later ``for_each`` stage whose ``init`` (or ``members``) names it takes its stage
        for the same entry, so that [mixture, then ``for_each: task`` from it] is multi-task pre-training then
        fine-tuning on each task, and [``for_each: leave_one_out``, then ``for_each: task`` from it] is
        leave-one-out (Section 3.5.3)."""
        if self.stages is None:
            out = [Stage("pretrain", "pretrain", None, settings=self.pretrain)] if self.pretrain else []
            for t in (self.finetune.tasks if self.finetune else []):
                need(t != UNSUPERVISED, "finetune.tasks", "'unsupervised' trains mixed with other tasks: name it in "
                     "the task list of a stage (stages:), not as a fine-tuning run of its own")
                out.append(Stage(t, "finetune", "pretrain" if self.pretrain else None, (t,), settings=self.finetune))
            return out
        out: list[Stage] = []
        templates: dict[str, list[str]] = {}  # a for_each stage -> its entries, in order
        for i, spec in enumerate(self.stages):
            where = f"stages[{i}]"
            need(spec.name not in templates and spec.name not in {s.name for s in out}, f"{where}.name",
                 f"stage name {spec.name!r} is used twice")
            entries = self._stage_tasks(spec, where)
            if spec.for_each is None:
                out.append(self._stage(spec, where, spec.name, None, tuple(entries), out, templates))
                continue
            supervised = [e for e in entries if e != UNSUPERVISED]
            need(len(supervised) >= (2 if spec.for_each == "leave_one_out" else 1), f"{where}.for_each",
                 f"for_each {spec.for_each} needs "
                 f"{'two tasks or more' if spec.for_each == 'leave_one_out' else 'a task'} in the stage's task list, "
                 f"got {', '.join(entries)}")
            extra = (UNSUPERVISED,) if UNSUPERVISED in entries else ()
            for entry in supervised:
                tasks = (entry, *extra) if spec.for_each == "task" else tuple(e for e in entries if e != entry)
                out.append(self._stage(spec, where, f"{spec.name}_{entry}", entry, tasks, out, templates))
            templates[spec.name] = supervised
        return out

    def _stage_tasks(self, spec: StageSpec, where: str) -> list[str]:
        """A stage's task list: ``finetune.tasks`` expanded, each name once, ``leave_out`` taken out."""
        from t5lit.data.mixtures import leave_out

        entries: list[str] = []
        for name in spec.task:
            if name == TASKS_REF:
                need(self.finetune is not None, f"{where}.task", f"task {TASKS_REF!r} needs a finetune section")
                names = self.finetune.tasks
            else:
                names = [name]
            entries += [n for n in names if n not in entries]
        if spec.leave_out:
            try:
                entries = leave_out(entries, spec.leave_out)
            except ConfigError as err:
                raise FieldError(f"{where}.leave_out", str(err)) from None
        return entries

    def _stage(self, spec: StageSpec, where: str, name: str, entry: str | None, tasks: tuple[str, ...],
               out: list[Stage], templates: dict[str, list[str]]) -> Stage:
        """One stage of the plan: its name, init and members resolved against the stages before it (``entry``:
        the entry of a for_each stage), its section's settings with its own keys over them."""
        try:
            check_name("stage name", name)
        except ConfigError as err:
            raise FieldError(f"{where}.name", str(err)) from None
        need(name not in {s.name for s in out} and name not in templates, f"{where}.name",
             f"stage name {name!r} is used twice")
        earlier = [s for s in out if s.kind in ("pretrain", "finetune")]

        def resolve(ref: str, key: str) -> str:
            if ref in templates:
                instances = [f"{ref}_{e}" for e in templates[ref]]
                need(entry is not None, f"{where}.{key}", f"{key} {ref!r} is a for_each stage; name one of its "
                     f"stages ({', '.join(instances)}) or make this stage for_each too")
                need(entry in templates[ref], f"{where}.{key}",
                     f"{key} {ref!r} has no stage for {entry!r} (it runs for {', '.join(templates[ref])})")
                return f"{ref}_{entry}"
            need(ref in {s.name for s in earlier}, f"{where}.{key}",
                 unknown_name_message("earlier training stage", ref, [s.name for s in earlier]
                                      + list(templates) + ([RANDOM_INIT] if key == "init" else [])))
            return ref

        members = tuple(resolve(m, f"members[{k}]") for k, m in enumerate(spec.members))
        ref = spec.init if spec.init is not None or not members else spec.members[0]
        if ref is None:
            pre = [s for s in earlier if s.kind == "pretrain"]
            init = pre[-1].name if pre else None
        else:
            init = None if ref == RANDOM_INIT else resolve(ref, "init")
        need(spec.kind != "evaluate" or init is not None, f"{where}.init",
             f"evaluate stage {name!r} needs weights: init (or members) must name an earlier training stage")
        need(not members or init == members[0], f"{where}.init",
             "an evaluate stage with members scores their ensemble; leave init out (it is the first member)")
        base = {"pretrain": self.pretrain, "finetune": self.finetune, "evaluate": self.evaluation}[spec.kind]
        cls = {"pretrain": PretrainSection, "finetune": FinetuneSection, "evaluate": EvaluationSection}[spec.kind]
        like = {}
        if spec.train_like == "pretrain":
            need(self.pretrain is not None, f"{where}.train_like", "train_like: pretrain needs a pretrain section")
            like = {k: getattr(self.pretrain, k) for k in PRETRAIN_SCHEDULE}
            like["eval_every"] = self.pretrain.checkpoint_every
        merged = {**(as_dict(base) if base is not None else {}), **like, **spec.settings}
        try:
            settings = build(cls, merged, f"{where}.", None)
        except ConfigError as err:
            raise FieldError(where, str(err)) from None
        if UNSUPERVISED in tasks:
            need(spec.kind == "finetune", f"{where}.task", f"an {spec.kind} stage scores tasks; {UNSUPERVISED!r} is "
                 "trained (mixed into a finetune stage's tasks), never scored")
            need(len(tasks) > 1, f"{where}.task", f"{UNSUPERVISED!r} alone is pre-training: use a pretrain stage")
            need(self.pretrain is not None, f"{where}.task", f"{UNSUPERVISED!r} is the pretrain section's objective on "
                 "its corpus: this experiment has no pretrain section")
            need(settings.mixing == "equal" or settings.mixing_limit is not None
                 or settings.unsupervised_size is not None, f"{where}.task",
                 f"{UNSUPERVISED!r} has no size for {settings.mixing} mixing: set mixing_limit (K) or "
                 "unsupervised_size")
        return Stage(name, spec.kind, init, tasks, spec.weights, settings, members, spec.replica,
                     random_init=ref == RANDOM_INIT)

    def reported_tasks(self) -> list[str]:
        """The task and mixture names whose scores make the results' summary columns, in plan order."""
        out: list[str] = []
        for stage in self.plan():
            for t in stage.task:
                if t not in out and t != UNSUPERVISED:
                    out.append(t)
        return out

    # -- dict form -----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping, sources: Mapping[str, str] | None = None) -> Experiment:
        """The typed experiment of a resolved mapping; ``sources`` maps dotted keys to the file (or override)
        that set them, for the one-line errors."""
        if isinstance(data, Experiment):
            return data
        return build(cls, data, "", sources)

    def to_dict(self) -> dict:
        return as_dict(self)

    def replace(self, **changes) -> Experiment:
        return dataclasses.replace(self, **changes)


SECTIONS = {"model": ModelSection, "pretrain": PretrainSection, "finetune": FinetuneSection,
            "evaluation": EvaluationSection, "trainer": TrainerSection, "runtime": RuntimeSection}


def defaults() -> dict:
    """Every default of the schema as a plain mapping (the bottom layer of every resolved experiment)."""
    return {"name": "experiment", "description": "", "seed": 0, "resolved_scale": "paper",
            **{k: _defaults_of(v) for k, v in SECTIONS.items()}, "stages": None}


def _defaults_of(cls) -> dict:
    out = {}
    for f in fields(cls):
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.name == "extra":
            continue
        out[f.name] = value
    return out


def as_dict(obj) -> Any:
    """A section (or the experiment) as the plain mapping a YAML file holds."""
    if isinstance(obj, StageSpec):
        out = {"name": obj.name, "kind": obj.kind}
        if obj.init is not None:
            out["init"] = obj.init
        if obj.task:
            out["task"] = list(obj.task)
        if obj.kind == "evaluate":
            out["weights"] = obj.weights
        for key in ("for_each", "leave_out", "members", "train_like", "replica"):  # only when set
            if getattr(obj, key):
                value = getattr(obj, key)
                out[key] = list(value) if isinstance(value, (list, tuple)) else value
        return {**out, **obj.settings}
    if dataclasses.is_dataclass(obj):
        out = {f.name: as_dict(getattr(obj, f.name)) for f in fields(obj)}
        if isinstance(obj, TrainerSection):
            out.update(out.pop("extra"))
        return out
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


# ------------------------------------------------------------------------------------------ typed building
def _where(sources: Mapping[str, str] | None, key: str) -> str:
    """``"<file or override>: "`` that set ``key`` or the nearest section above it ("" without sources)."""
    if sources is None:
        return ""
    under = [src for k, src in sources.items() if k == key or k.startswith((key + ".", key + "["))]
    if under:  # the key itself, or the latest file or override that set anything under it
        return f"{under[-1]}: "
    parts = key.replace("[", ".[").split(".")
    for n in range(len(parts) - 1, 0, -1):
        src = sources.get(".".join(parts[:n]).replace(".[", "["))
        if src:
            return f"{src}: "
    return "experiment: "


def build(cls, data: Mapping, prefix: str, sources: Mapping[str, str] | None):
    """``cls(**data)`` with every key checked, every value typed (ints stay ints, an integral float becomes an
    int, an int a float) and the dataclass's own checks run; errors name the source and the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(sources, prefix[:-1])}{prefix[:-1] or 'the experiment'} must be a mapping "
                          f"of keys to values, got {type(data).__name__} {data!r}")
    if cls is TrainerSection:
        data = TrainerSection.split(data, prefix, sources)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    for key in data:
        if key not in names:
            where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
            raise ConfigError(_where(sources, prefix + str(key)) + unknown_name_message("key", key, names, where))
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = coerce(hints[name], data[name], prefix + name, sources)
    try:
        return cls(**kwargs)
    except FieldError as err:
        key, text = prefix + err.key, str(err)
        where = _where(sources, key)
        if where == "flag: ":  # a command-line flag: the message first, then the flag that caused it
            raise ConfigError(f"{prefix}{text}" if text.startswith(err.key) else f"{text} (--{key})") from None
        text = f"{prefix}{text}" if text.startswith(err.key) else f"{key}: {text}"
        raise ConfigError(where + text) from None


def _describe(tp) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(tp, value, key: str, sources):
    """``value`` as type ``tp`` (an annotation of the schema); a one-line error naming the key otherwise."""
    where = _where(sources, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return coerce(rest[0], value, key, sources)
        return value
    if tp is Any:
        return value
    if value is None:
        raise ConfigError(f"{where}{key} must be {_describe(tp)}, got null")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key + ".", sources)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if not _number(value):
            raise ConfigError(f"{where}{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}{key} must be a string, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str) and args and args[0] is str:
            value = [value]  # one name where a list of names is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}{key} must be a list, got {value!r}")
        if args and args[0] is StageSpec:
            return [_stage_spec(v, f"{key}[{i}]", sources) for i, v in enumerate(value)]
        return [coerce(args[0], v, f"{key}[{i}]", sources) if args else v for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}{key} must be a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): coerce(vt, v, f"{key}.{k}", sources) for k, v in value.items()}
    return value


def _stage_spec(raw, key: str, sources, keys_only: bool = False) -> StageSpec | None:
    where = _where(sources, key)
    if not isinstance(raw, Mapping) or "name" not in raw or "kind" not in raw:
        raise ConfigError(f"{where}{key} must be a mapping with at least name and kind, got {raw!r}")
    kind = raw["kind"]
    if kind not in STAGE_KINDS:
        raise ConfigError(f"{where}{key}.kind: " + unknown_name_message("stage kind", kind, list(STAGE_KINDS)))
    section = {"pretrain": PretrainSection, "finetune": FinetuneSection, "evaluate": EvaluationSection}[kind]
    allowed = [f.name for f in fields(section) if not (kind == "finetune" and f.name == "tasks")]
    meta = {k: v for k, v in raw.items() if k in StageSpec.META}
    settings = {k: v for k, v in raw.items() if k not in StageSpec.META}
    for k in settings:
        if k not in allowed:
            raise ConfigError(where + unknown_name_message("key", k, list(StageSpec.META) + allowed,
                                                           f"in {kind} stage {raw['name']!r}"))
    if keys_only:
        return None
    meta["settings"] = settings
    return build(StageSpec, meta, key + ".", sources)


# ------------------------------------------------------------------------------------------ key checks
TOP_LEVEL = ("name", "description", "seed", "resolved_scale", *SECTIONS, "stages")


def check_keys(data: Mapping, where: str) -> None:
    """Every key of one file (or one override) against the schema, before anything is merged or run: an
    unknown key is one line naming ``where``, the key and the closest valid one. Values are checked later."""
    for key, value in data.items():
        if key in ("base", "scale"):
            continue
        if key not in TOP_LEVEL:
            raise ConfigError(f"{where}: " + unknown_name_message("key", key, [*TOP_LEVEL, "base", "scale"],
                                                                  "at the top level"))
        if key in SECTIONS and isinstance(value, Mapping):
            _check_section_keys(SECTIONS[key], value, key, where)
        elif key == "stages" and isinstance(value, list):
            for i, entry in enumerate(value):
                _stage_spec(entry, f"stages[{i}]", {"stages": where}, keys_only=True)


def _check_section_keys(cls, data: Mapping, path: str, where: str) -> None:
    if cls is TrainerSection:
        TrainerSection.split(data, path + ".", {path: where})
        return
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: " + unknown_name_message("key", key, names, f"under '{path}'"))
    if cls is ModelSection and isinstance(data.get("overrides"), Mapping):
        from t5lit.config import ModelConfig

        valid = [f.name for f in fields(ModelConfig)]
        for key in data["overrides"]:
            if key not in valid:
                raise ConfigError(f"{where}: " + unknown_name_message("ModelConfig field", key, valid,
                                                                      "under 'model.overrides'"))
