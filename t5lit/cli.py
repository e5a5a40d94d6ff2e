"""The ``t5lit`` command.

    t5lit fit|validate|test --config experiments/debug.yaml [--trainer.max_steps 10] [--print_config]
    t5lit run experiments/quickstart.yaml [path.to.key=value ...] [--run-dir DIR]
    t5lit sweep run|report sweeps/NAME.yaml [...]
    t5lit eval --checkpoint CKPT --task NAME|MIXTURE [--data_dir DIR]
    t5lit list presets|architectures|objectives|tasks|mixtures|corpora
    t5lit vocab train --corpus NAME [--option KEY=VALUE ...] --size N --out PATH
    t5lit data show --objective NAME [--text ...]
    t5lit export-hf CKPT DIR

``fit``/``validate``/``test`` go through LightningCLI (YAML configs, dotted overrides, --print_config) with
``model.arch`` written once and linked to the data module. Errors a user can cause print one line.
"""

from __future__ import annotations

import argparse
import os
import sys

from t5lit.registry import ConfigError

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_main(args: list[str]) -> None:
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from t5lit.callbacks import ThroughputMonitor
    from t5lit.lit_module import T5LitModule

    class T5LitCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.link_arguments("model.arch", "data.init_args.arch")

    # LightningCLI reads sys.argv (given ``args`` too, it warns that both are set): hand it ours.
    saved, sys.argv = sys.argv, [f"{os.path.basename(sys.argv[0] or 't5lit')}", *args]
    try:
        T5LitCLI(T5LitModule, L.LightningDataModule, subclass_mode_data=True,
                 trainer_defaults={"callbacks": [ThroughputMonitor()]},
                 save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    finally:
        sys.argv = saved


def list_main(kind: str) -> None:
    if kind == "presets":
        import torch

        from t5lit.config import PRESETS, preset_config
        from t5lit.model.architectures import build_model, count_parameters

        for name in PRESETS.names():
            cfg = preset_config(name)
            with torch.device("meta"):
                n = count_parameters(build_model(cfg))
            print(f"{name:14s} {n:>13,d} params  d_model={cfg.d_model} layers={cfg.num_encoder_layers}+"
                  f"{cfg.num_decoder_layers} heads={cfg.num_heads} d_ff={cfg.d_ff} ffn={cfg.ffn}")
        return
    if kind == "architectures":
        from t5lit.config import ARCHITECTURES

        names = list(ARCHITECTURES)
    elif kind == "objectives":
        from t5lit.objectives import OBJECTIVES

        names = OBJECTIVES.names()
    elif kind == "tasks":
        from t5lit.data.tasks import TASKS

        names = TASKS.names()
    elif kind == "mixtures":
        from t5lit.data.mixtures import MIXTURES

        names = MIXTURES.names()
    elif kind == "corpora":
        from t5lit.data.sources import CORPORA

        names = CORPORA.names()
    else:
        from t5lit.registry import unknown_name_message

        raise ConfigError(unknown_name_message("list kind", kind, sorted(LIST_KINDS)))
    print("\n".join(names))


LIST_KINDS = ("presets", "architectures", "objectives", "tasks", "mixtures", "corpora")


def data_show(objective: str, text: str | None, params: list[str], inputs_length: int, vocab_spec: str,
              seed: int) -> None:
    """Print what an objective does to a text: pieces with sentinels visible, then every architecture's
    features."""
    import numpy as np

    from t5lit.config import ARCHITECTURES
    from t5lit.data.vocab import load_vocabulary
    from t5lit.experiment import parse_cli_overrides
    from t5lit.features import converter_for
    from t5lit.objectives import get_objective, raw_length

    kwargs = parse_cli_overrides(params)
    objective_fn = get_objective(objective, **kwargs)  # a bad name or parameter fails before any slow work
    raw, targets_length = raw_length(objective_fn, inputs_length)
    vocab = load_vocabulary(vocab_spec)
    text = text or ("Thank you for inviting me to your party last week. The food was delicious and the "
                    "music kept everyone dancing until late.")
    tokens = np.asarray(vocab.encode(text), dtype=np.int32)
    tokens = tokens[:raw]
    example = objective_fn(tokens, np.random.default_rng(seed), vocab)
    print(f"objective {objective} {kwargs or ''}  raw chunk {len(tokens)} tokens (a full chunk is {raw}; "
          f"inputs {inputs_length}, targets {targets_length})")
    print("original:", " ".join(vocab.pieces(tokens.tolist())))
    for key in ("inputs", "targets"):
        print(f"{key + ':':9s}", " ".join(vocab.pieces(example[key].tolist())))
    for arch in ARCHITECTURES:
        conv = converter_for(arch, len(example["inputs"]), len(example["targets"]))
        feats = conv([example])
        print(f"\n[{arch}]")
        for name, arr in feats.items():
            row = arr[0]
            shown = " ".join(vocab.pieces(row.tolist())) if name.endswith("tokens") else " ".join(
                f"{v:g}" for v in row.tolist())
            print(f"  {name:26s} {shown}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t5lit", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help="LightningCLI (see `t5lit fit --help`)", add_help=False)
    s = sub.add_parser("list", help="list the names a config may use")
    s.add_argument("kind", help=" | ".join(LIST_KINDS))

    s = sub.add_parser("run", help="one experiment: pre-train -> fine-tune -> evaluate -> results.json")
    s.add_argument("experiment", help="an experiment YAML, e.g. experiments/quickstart.yaml")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.steps=100")
    s.add_argument("--run-dir", default=None, help="run directory (default runs/<name>); reuse it to resume")

    s = sub.add_parser("sweep", help="Optuna sweeps: run | report")
    ss = s.add_subparsers(dest="sweep_command", required=True)
    r = ss.add_parser("run", help="start workers on a sweep's study (re-run to continue after a crash)")
    r.add_argument("sweep")
    r.add_argument("--storage", default=None, help="an RDB URL (postgresql://...) shared by machines; "
                   "default: a journal file beside the runs")
    r.add_argument("--devices", default=None, help="GPU ids, e.g. 0,1,2,3: one worker per GPU group")
    r.add_argument("--devices-per-trial", type=int, default=1)
    r.add_argument("--workers", type=int, default=1, help="worker processes on CPU")
    r.add_argument("--out", default="runs/sweeps", help="where run directories and the journal go")
    r = ss.add_parser("report", help="the paper-style table, CSV, plots and TensorBoard text")
    r.add_argument("sweep", nargs="?", default=None)
    r.add_argument("--study", default=None)
    r.add_argument("--storage", default=None)
    r.add_argument("--out", default="runs/sweeps")

    s = sub.add_parser("eval", help="score a checkpoint on a task or mixture")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--data_dir", default=None)
    s.add_argument("--vocab", default="builtin")
    s.add_argument("--batch_size", type=int, default=32)
    s.add_argument("--max_examples", type=int, default=None)
    s.add_argument("--num_beams", type=int, default=None)

    s = sub.add_parser("vocab", help="SentencePiece vocabularies")
    vs = s.add_subparsers(dest="vocab_command", required=True)
    r = vs.add_parser("train", help="train a unigram SentencePiece model with T5's conventions")
    r.add_argument("--corpus", required=True)
    r.add_argument("--size", type=int, required=True, help="number of SentencePiece pieces (T5: 32000)")
    r.add_argument("--out", required=True)
    r.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="corpus option, e.g. paths=data/*.txt for --corpus files (values parsed as YAML)")
    r.add_argument("--max-documents", type=int, default=200_000)

    s = sub.add_parser("data", help="inspect the data pipeline")
    ds = s.add_subparsers(dest="data_command", required=True)
    r = ds.add_parser("show", help="what an objective does to a text, for every architecture")
    r.add_argument("--objective", required=True)
    r.add_argument("--text", default=None)
    r.add_argument("--param", action="append", default=[], help="objective parameter, e.g. noise_density=0.5")
    r.add_argument("--inputs-length", type=int, default=32)
    r.add_argument("--vocab", default="builtin")
    r.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("export-hf", help="write a checkpoint as a transformers T5ForConditionalGeneration dir")
    s.add_argument("checkpoint")
    s.add_argument("out_dir")
    return p


def dispatch(argv: list[str]) -> None:
    if argv and argv[0] in LIGHTNING_COMMANDS:
        lightning_main(argv)
        return
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if ns.command == "run":  # argparse ends a nargs="*" positional at the first option: take the rest too
        more = [e for e in extra if "=" in e and not e.startswith("-")]
        ns.overrides, extra = ns.overrides + more, [e for e in extra if e not in more]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if ns.command == "list":
        list_main(ns.kind)
    elif ns.command == "run":
        from t5lit.pipeline import run_cli

        run_cli(ns.experiment, ns.overrides, ns.run_dir)
    elif ns.command == "sweep":
        sweep_main(ns)
    elif ns.command == "eval":
        from t5lit.evaluate import evaluate_checkpoint

        evaluate_checkpoint(ns.checkpoint, ns.task, data_dir=ns.data_dir, vocab=ns.vocab,
                            batch_size=ns.batch_size, max_examples=ns.max_examples, num_beams=ns.num_beams)
    elif ns.command == "vocab":
        from itertools import islice

        from t5lit.data.sources import iter_documents
        from t5lit.data.vocab import train_vocabulary
        from t5lit.experiment import parse_cli_overrides

        documents = iter_documents(ns.corpus, "train", **parse_cli_overrides(ns.option))
        vocab = train_vocabulary(islice(documents, ns.max_documents), ns.size, ns.out)
        print(f"wrote {ns.out}: {vocab.vocab_size} ids ({ns.size} pieces + {vocab.num_extra_ids} extra ids)")
    elif ns.command == "data":
        data_show(ns.objective, ns.text, ns.param, ns.inputs_length, ns.vocab, ns.seed)
    elif ns.command == "export-hf":
        from t5lit.model.hf import export_lightning_checkpoint

        export_lightning_checkpoint(ns.checkpoint, ns.out_dir)
        print(f"wrote {ns.out_dir} (load it with T5ForConditionalGeneration.from_pretrained)")


def sweep_main(ns) -> None:
    from t5lit.sweep import report_cli, run_cli

    if ns.sweep_command == "run":
        run_cli(ns)
    else:
        report_cli(ns)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        dispatch(argv)
    except ConfigError as err:
        print(f"t5lit: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
