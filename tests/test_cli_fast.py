"""The `t5lit` command answers at once and explains itself: `--help` and `list` import neither torch nor
Lightning (a cold import of torch takes seconds), presets are counted from their numbers (equal to the built
models' counts), and every option and argument of every subcommand has help text."""

import argparse
import subprocess
import sys

import pytest
import torch

from t5lit.cli import architecture_names, build_parser
from t5lit.config import ARCHITECTURES, PRESETS, preset_config, preset_parameters
from t5lit.model.architectures import build_model, count_parameters

HEAVY = ("torch", "lightning", "transformers", "optuna")


@pytest.mark.parametrize("argv", [["--help"], ["list", "presets"], ["list", "architectures"], ["list", "tasks"],
                                  ["list", "objectives"], ["sweep", "run", "--help"], ["export-hf", "--help"]])
def test_fast_commands_import_nothing_heavy(argv):
    code = ("import sys\nfrom t5lit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_preset_parameters_are_the_built_models_counts():
    for name in PRESETS.names():
        with torch.device("meta"):
            assert preset_parameters(name) == count_parameters(build_model(preset_config(name))), name


def test_architecture_names_without_importing_the_model():
    assert architecture_names() == ARCHITECTURES.names()


def _parsers(parser: argparse.ArgumentParser, prog: str = "t5lit"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_option_has_help():
    missing = []
    for prog, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"{prog} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
