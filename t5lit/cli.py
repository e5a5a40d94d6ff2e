"""The ``t5lit`` command.

    t5lit fit|validate|test --config experiments/debug.yaml [--trainer.max_steps 10] [--print_config]
    t5lit run experiments/quickstart.yaml [path.to.key=value ...] [--run-dir DIR]
    t5lit sweep run|report sweeps/NAME.yaml [...]
    t5lit eval --checkpoint CKPT --task NAME|MIXTURE [--data_dir DIR]
    t5lit list presets|architectures|objectives|tasks|mixtures|corpora
    t5lit vocab train --corpus NAME --size N --out PATH
    t5lit data show --objective NAME [--text ...]
    t5lit export-hf CKPT DIR

``fit``/``validate``/``test`` go through LightningCLI (YAML configs, dotted overrides, --print_config) with
``model.arch`` written once and linked to the data module. Errors a user can cause print one line.
"""

from __future__ import annotations

import argparse
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

    T5LitCLI(T5LitModule, L.LightningDataModule, subclass_mode_data=True, args=args,
             trainer_defaults={"callbacks": [ThroughputMonitor()]},
             save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)


def list_main(kind: str) -> None:
    if kind == "presets":
        from t5lit.config import PRESETS, preset_config
        from t5lit.model.architectures import build_model, count_parameters

        import torch

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t5lit", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help="LightningCLI (see `t5lit fit --help`)", add_help=False)
    s = sub.add_parser("list", help="list the names a config may use")
    s.add_argument("kind", help=" | ".join(LIST_KINDS))
    return p


def dispatch(argv: list[str]) -> None:
    if argv and argv[0] in LIGHTNING_COMMANDS:
        lightning_main(argv)
        return
    ns, rest = build_parser().parse_known_args(argv)
    if ns.command == "list":
        list_main(ns.kind)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        dispatch(argv)
    except ConfigError as err:
        print(f"t5lit: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
