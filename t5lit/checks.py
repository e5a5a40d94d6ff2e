"""Everything about an experiment that can be checked before any work starts (``t5lit check`` runs exactly this).

The schema (t5lit/schema.py) has already typed and range-checked every value; here come the checks that look
at the world or at several sections together, for every stage of the plan, before pre-training starts:

- the vocabulary exists and fits the model's ``vocab_size``;
- each pre-training stage's corpus and its local files; its objective on the vocabulary at its lengths (a
  few examples are made from synthetic chunks, so an objective needing more sentinels than the vocabulary
  has, or one breaking its own length budget, fails here and not hours in); the architecture's features;
- each fine-tuning or evaluate stage's tasks, and the official files its ``data_dir`` must hold, read whole (a
  label out of range or a truncated line fails here, naming its file and line);
- each fine-tuning stage that mixes in the unsupervised member: the pretrain section's corpus, its objective
  at the stage's lengths on the vocabulary (as for a pre-training stage), and its lanes against the devices;
- each fine-tuning stage's method (Table 10) against the model: adapters against the stage it starts from,
  gradual unfreezing's schedule against the depth and the steps (and what trains is printed);
- the trainer's accelerator exists, a sharded strategy's optimizer and precision, and the run directory can
  be created.

Nothing is written: an experiment that fails its checks leaves no trace on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from t5lit.io import check_can_create
from t5lit.registry import ConfigError
from t5lit.schema import Experiment, Stage

SYNTHETIC_EXAMPLES = 8  # chunks run through each pre-training objective by the check


def check_experiment(exp: Experiment, run_dir: str | Path | None = None) -> None:
    """Raise a one-line ConfigError for the first problem found; return quietly when the experiment can run."""
    model_cfg = exp.model.config()
    if model_cfg.adapter_dim:
        raise ConfigError("model.overrides.adapter_dim: adapters are a fine-tuning method (Table 10); set "
                          "finetune.method: adapters and finetune.adapter_dim instead")
    vocab = check_vocabulary(exp.model.vocab, model_cfg.vocab_size)
    if exp.model.init_from:
        from t5lit.checkpoint import check_hf_init

        check_hf_init(exp.model.init_from, model_cfg, exp.model.preset)
    for stage in exp.plan():
        try:
            if stage.kind == "pretrain":
                _check_pretrain(stage, exp, vocab)
            elif stage.kind == "finetune":
                _check_tasks(stage, stage.settings.data_dir, stage.settings.data_dirs, ("train", "validation"))
                _check_lengths(exp.model.arch, stage.settings.inputs_length, stage.settings.targets_length)
                _check_finetune_method(stage, exp)
                _check_unsupervised(stage, exp, vocab)
            else:
                fin = exp.finetune
                _check_tasks(stage, fin.data_dir if fin else None, fin.data_dirs if fin else {}, ("validation",))
        except ConfigError as err:
            raise ConfigError(f"stage {stage.name!r}: {err}") from None
    _check_trainer(exp)
    _check_sharding(exp)
    if run_dir is not None:
        check_output_dir(Path(run_dir))


# ------------------------------------------------------------------------------------------ vocabulary
class _IdsOnlyVocab:
    """Stands in for a vocabulary not built yet (the built-in one is trained on first use): ids, and an
    ``encode`` that gives one id per word piece of 4 characters (UL2's mode tokens)."""

    pad_id, eos_id, unk_id = 0, 1, 2

    def __init__(self, vocab_size: int, num_extra_ids: int = 100):
        self.vocab_size, self.num_extra_ids = vocab_size, num_extra_ids

    def sentinel_id(self, i: int) -> int:
        return self.vocab_size - 1 - i

    def encode(self, text: str) -> list[int]:
        return [3 + (i % 50) for i in range(max(1, (len(text) + 3) // 4))]


def check_vocabulary(spec: str, model_vocab_size: int):
    """The vocabulary of ``spec`` (or a stand-in of its size when it is the built-in one, not trained yet):
    its file must exist and load, and its ids must fit the model's embedding."""
    from t5lit.data.vocab import DEFAULT_EXTRA_IDS, builtin_vocabulary_path, load_vocabulary

    text = str(spec)
    if text == "builtin" or text.startswith("builtin:"):
        pieces = 1000 if text == "builtin" else text.split(":", 1)[1]
        if not str(pieces).isdigit() or int(pieces) < 1:
            raise ConfigError(f"model.vocab {text!r}: use 'builtin', 'builtin:<pieces>' (e.g. builtin:1000) or a "
                              "SentencePiece .model path")
        path = builtin_vocabulary_path(int(pieces))
        vocab = load_vocabulary(text) if path.is_file() else _IdsOnlyVocab(int(pieces) + DEFAULT_EXTRA_IDS)
    else:
        try:
            vocab = load_vocabulary(text)
        except ConfigError as err:
            raise ConfigError(f"model.vocab: {err}") from None
        except Exception as err:  # noqa: BLE001 - SentencePiece rejects a file that is not a model
            raise ConfigError(f"model.vocab: {text} is not a SentencePiece model ({type(err).__name__})") from None
    if vocab.vocab_size > model_vocab_size:
        raise ConfigError(f"model.vocab has {vocab.vocab_size} ids but the model's vocab_size is {model_vocab_size}; "
                          "raise model.overrides.vocab_size or use a smaller vocabulary")
    return vocab


# ------------------------------------------------------------------------------------------ stages
def _check_pretrain(stage: Stage, exp: Experiment, vocab) -> None:
    from t5lit.data.examples import PretrainFeatures
    from t5lit.data.sources import check_corpus

    p = stage.settings
    check_corpus(p.corpus, p.corpus_options)
    features = PretrainFeatures.build(p.objective, p.objective_params, exp.model.arch, p.inputs_length,
                                      p.targets_length)
    # the model features of a batch, as training makes them
    features.features(features.examples(*_synthetic_chunks(vocab, features.budget.raw, exp.seed), vocab))
    _check_pretrain_data(p, exp, features.budget.raw)
    check_corpus(p.corpus, p.corpus_options, probe=True)  # its first document: reachable, not empty


def _devices(exp: Experiment) -> int | None:
    """The training processes (devices x nodes), when the trainer section says how many."""
    devices = exp.trainer.devices
    count = len(devices) if isinstance(devices, (list, tuple)) else devices if isinstance(devices, int) else None
    return None if count is None or count < 1 else count * exp.trainer.num_nodes


def _synthetic_chunks(vocab, raw: int, seed: int) -> tuple[np.ndarray, list]:
    """``(chunks, rngs)``: SYNTHETIC_EXAMPLES chunks of ``raw`` random ordinary ids and a generator each, what an
    objective is run on to check it at the experiment's lengths and vocabulary before any real data is read."""
    low, high = 3, max(4, vocab.vocab_size - vocab.num_extra_ids)
    chunks = np.random.default_rng(0).integers(low, high, size=(SYNTHETIC_EXAMPLES, raw), dtype=np.int64)
    return chunks.astype(np.int32), [np.random.default_rng((seed, 0, i)) for i in range(SYNTHETIC_EXAMPLES)]


def _lanes_fit(lanes: int, readers: int) -> int:
    """The nearest count of lanes at or above ``lanes`` that ``readers`` (devices x workers) split evenly."""
    return readers * max(1, -(-lanes // readers))


def _check_pretrain_data(p, exp: Experiment, raw: int) -> None:
    """The lanes split between every device's DataLoader workers; a capped corpus holds at least one batch."""
    world = _devices(exp)
    workers = max(1, p.num_workers)
    if world is not None and p.lanes % (world * workers):
        raise ConfigError(f"pretrain.lanes ({p.lanes}) must be a multiple of devices x num_workers ({world} x "
                          f"{workers}): each DataLoader worker of each device reads whole lanes; set pretrain.lanes "
                          f"to {_lanes_fit(p.lanes, world * workers)}")
    if p.max_tokens is not None and p.max_tokens < p.batch_size * raw:
        raise ConfigError(f"pretrain.max_tokens ({p.max_tokens:,}) is less than one batch: {p.batch_size} chunks of "
                          f"{raw} tokens ({p.batch_size * raw:,} tokens); raise max_tokens or lower batch_size")


def _check_unsupervised(stage: Stage, exp: Experiment, vocab) -> None:
    """The unsupervised member of a fine-tuning stage (t5lit/data/unsupervised.py): the pretrain section's
    corpus, and its objective making examples of the stage's lengths that the stage's features take."""
    from t5lit.data.mixtures import mixture_members
    from t5lit.data.sources import check_corpus
    from t5lit.data.unsupervised import UnsupervisedMember
    from t5lit.features import converter_for

    if not mixture_members(stage.task)[1]:
        return
    p, f = exp.pretrain, stage.settings
    check_corpus(p.corpus, p.corpus_options)
    member = UnsupervisedMember(p.corpus, p.corpus_options, p.objective, p.objective_params, exp.model.arch,
                                f.inputs_length, f.targets_length, p.lanes, 1, exp.seed, f.pack)
    examples = member.cut(member.recipe.examples(*_synthetic_chunks(vocab, member.raw, exp.seed), vocab))
    converter_for(exp.model.arch, f.inputs_length, f.targets_length, pack=f.pack)(examples)  # the stage's features
    world = _devices(exp)
    workers = max(1, f.num_workers)
    if world is not None and p.lanes % (world * workers):
        raise ConfigError(f"the unsupervised member reads pretrain.lanes ({p.lanes}) lanes, which must be a multiple "
                          f"of devices x finetune.num_workers ({world} x {workers}); set pretrain.lanes to "
                          f"{_lanes_fit(p.lanes, world * workers)}")
    check_corpus(p.corpus, p.corpus_options, probe=True)  # its first document: reachable, not empty


def _check_tasks(stage: Stage, data_dir, data_dirs: dict, splits: tuple[str, ...]) -> None:
    from t5lit.data.mixtures import get_task_or_mixture, task_names

    dirs = {t: d for name, d in (data_dirs or {}).items() for t in task_names(name)}
    for name in stage.task:
        for task in get_task_or_mixture(name):
            folder = dirs.get(task.name, data_dir)
            if folder is None:
                continue  # the Hugging Face hub, reached when the stage loads it
            for split in splits:
                if split not in task.splits:
                    continue
                for path in task.data_files(split, folder):
                    if not path.is_file():
                        raise ConfigError(f"task {task.name}: data file not found: {path} (data_dir must hold "
                                          f"{task.source.layout})")
                task.load(split, folder)  # read whole: a broken line fails now, not after pre-training


def _check_lengths(arch: str, inputs_length: int, targets_length: int) -> None:
    from t5lit.features import converter_for

    converter_for(arch, inputs_length, targets_length)


def _check_finetune_method(stage: Stage, exp: Experiment) -> None:
    """A fine-tuning method (Section 3.5.1, Table 10) against the model and the stage it starts from; prints
    what trains (``t5lit check`` shows it, and so does a run as it starts). Adapters: the stage it starts from
    holds no adapters, or adapters of the same width. Gradual unfreezing: every block of the deepest stack
    starts training within the stage's steps."""
    import torch

    from t5lit.callbacks import GradualUnfreezing
    from t5lit.model.architectures import build_model, freeze_all_but_adapters, parameter_counts

    f, cfg = stage.settings, exp.model.config()
    source = next((s for s in exp.plan() if s.name == stage.init), None)
    before = source.settings.adapter_dim if source is not None and source.kind == "finetune" else None
    if before and before != f.adapter_dim:
        raise ConfigError(f"it starts from stage {source.name!r}, fine-tuned with adapters of width {before}: set "
                          f"method: adapters and adapter_dim: {before}")
    if f.method == "adapters":
        with torch.device("meta"):
            model = build_model(cfg.replace(adapter_dim=f.adapter_dim))
        freeze_all_but_adapters(model)
        trainable, total = parameter_counts(model)
        print(f"# stage {stage.name!r}: adapters of width {f.adapter_dim} after every feed-forward network: "
              f"{trainable:,d} of {total:,d} parameters train ({100 * trainable / total:.2f}%)")
    elif f.method == "gradual_unfreezing":
        blocks = max(cfg.num_encoder_layers, cfg.num_decoder_layers)
        starts = GradualUnfreezing.schedule(f.steps, blocks, f.unfreeze_every)
        if starts[-1] >= f.steps:
            raise ConfigError(f"finetune.unfreeze_every {f.unfreeze_every} does not fit {blocks} blocks per stack in "
                              f"{f.steps} steps: the bottom block would start at step {starts[-1]}; use at most "
                              f"{(f.steps - 1) // max(1, blocks - 1)}, or null for steps / blocks")
        print(f"# stage {stage.name!r}: gradual unfreezing of {blocks} blocks per stack from the top, starting at "
              f"steps {', '.join(map(str, starts))} of {f.steps}")


def _check_sharding(exp: Experiment) -> None:
    """``trainer.strategy: fsdp_blocks`` (t5lit/fsdp.py): AdamW in every training stage (torch's Adafactor
    factors a weight's second moment over rows and columns that a shard does not hold whole) and a precision
    Lightning's ModelParallelStrategy takes; Lightning's own ``fsdp`` needs CUDA."""
    from t5lit.fsdp import PRECISIONS, STRATEGY

    strategy, accelerator = str(exp.trainer.strategy), str(exp.trainer.accelerator)
    if strategy in ("fsdp", "fsdp_cpu_offload") and accelerator == "cpu":
        raise ConfigError(f"trainer.strategy {strategy!r} (Lightning's FSDP) needs a CUDA device; use "
                          f"trainer.strategy: {STRATEGY}, which shards on CPU too")
    if strategy != STRATEGY:
        return
    for stage in exp.plan():
        if stage.kind != "evaluate" and stage.settings.optimizer != "adamw":
            raise ConfigError(f"stage {stage.name!r}: trainer.strategy {STRATEGY} needs {stage.kind}.optimizer: adamw "
                              f"(Adafactor's factored statistics need whole weights, which a shard does not hold)")
    if str(exp.trainer.precision) not in PRECISIONS:
        raise ConfigError(f"trainer.strategy {STRATEGY} takes trainer.precision {', '.join(PRECISIONS)}; got "
                          f"{exp.trainer.precision!r}")


def _check_trainer(exp: Experiment) -> None:
    accelerator = str(exp.trainer.accelerator)
    if exp.runtime.cpu_fast_paths and accelerator in ("cpu", "auto"):
        from t5lit.model.cpu import plan_fast_paths

        try:
            plan_fast_paths()  # $T5LIT_CPU_FAST_PATHS, if set, must name known paths
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator is {accelerator!r} but no CUDA device is visible; use cpu or auto")


def check_output_dir(run_dir: Path) -> None:
    """The run directory is a directory, or can be made: its nearest existing parent is a writable folder."""
    path = run_dir.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {run_dir} exists and is not a directory")
    check_can_create(path, f"run directory {run_dir}")
