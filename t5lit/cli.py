"""The ``t5lit`` command.

    t5lit run EXPERIMENT [path.to.key=value ...] [--run-dir DIR]     every stage -> results.json
    t5lit fit --config EXPERIMENT [--stage NAME] [--section.key value ...] [--print_config]   one stage
    t5lit check EXPERIMENT_OR_SWEEP [path.to.key=value ...]         every check a run makes, then the config
    t5lit sweep run|status|report SWEEP [...]
    t5lit eval --checkpoint CKPT [CKPT ...] --task NAME|MIXTURE [--data_dir DIR]    several: their ensemble
    t5lit predict --checkpoint CKPT|STAGE_DIR [...] --task glue|super_glue|NAME ... --out DIR   test-set files
    t5lit list presets|architectures|objectives|tasks|mixtures|corpora
    t5lit vocab train --corpus NAME [--option KEY=VALUE ...] --size N --out PATH
    t5lit data show --objective NAME [--text ...]
    t5lit export-hf CKPT DIR [--vocab SPM]                           weights, tokenizer, model card

Every command reads experiments through one schema (t5lit/schema.py). Errors a user can cause print one
line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys

from t5lit.registry import ConfigError

LIST_KINDS = ("presets", "architectures", "objectives", "tasks", "mixtures", "corpora")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``t5lit: error: <what>; see <command> --help``, exit code 2) instead of
    the usage block; ``add_subparsers`` makes its subcommands' parsers of this class too."""

    def error(self, message: str):
        required = "the following arguments are required: "
        if message.startswith(required):  # argparse names dests; say what is missing and what is valid
            missing = message[len(required):].split(", ")
            for action in self._actions:
                if isinstance(action, argparse._SubParsersAction) and action.dest in missing:
                    usage_error(self.prog, f"{self.prog} needs a command: {', '.join(action.choices)}")
                if not action.option_strings and action.nargs in ("*", "?") and action.dest in missing:
                    missing.remove(action.dest)  # an optional positional is never what is missing
            message = required + ", ".join(missing)
        usage_error(self.prog, message)


def usage_error(prog: str, message: str):
    """A command-line mistake: one line on stderr, exit code 2."""
    print(f"t5lit: error: {' '.join(message.split())}; see {prog} --help", file=sys.stderr)
    sys.exit(2)


def list_main(kind: str) -> None:
    """``t5lit list KIND``: the names a config may use. Presets and architectures are listed without importing
    torch or the model (their numbers and names are read as data), so the command answers at once."""
    if kind == "presets":
        from dataclasses import fields

        from t5lit.config import PRESETS, ModelConfig, preset_parameters

        for name in PRESETS.names():
            cfg = {f.name: f.default for f in fields(ModelConfig)} | PRESETS.get(name)
            print(f"{name:14s} {preset_parameters(name):>13,d} params  d_model={cfg['d_model']} "
                  f"layers={cfg['num_encoder_layers']}+{cfg['num_decoder_layers']} heads={cfg['num_heads']} "
                  f"d_ff={cfg['d_ff']} ffn={cfg['ffn']}")
        return
    if kind == "architectures":
        names = architecture_names()
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


def architecture_names() -> list[str]:
    """The registered architectures in registration order. The built-in ones are read from the
    ``register_architecture(ArchSpec("name", ...))`` calls of t5lit/model/architectures.py without importing
    it (it imports torch: seconds); a plug-in package (the ``t5lit.architectures`` entry points) is imported as
    usual. tests/test_cli.py checks that this equals ``ARCHITECTURES.names()``."""
    import ast
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    if entry_points(group="t5lit.architectures"):
        from t5lit.config import ARCHITECTURES

        return ARCHITECTURES.names()
    spec = find_spec("t5lit.model")
    source = open(f"{spec.submodule_search_locations[0]}/architectures.py", encoding="utf-8").read()
    return [call.args[0].args[0].value for call in ast.walk(ast.parse(source))
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "register_architecture"
            and call.args and isinstance(call.args[0], ast.Call) and call.args[0].args
            and isinstance(call.args[0].args[0], ast.Constant)]


def data_show(objective: str, text: str | None, params: list[str], inputs_length: int, vocab_spec: str,
              seed: int) -> None:
    """Print what an objective does to a text (pieces, sentinels visible), then the model features every
    architecture trains on: built by the same ``PretrainFeatures`` as pre-training, shown without the
    trailing padding of the rows."""
    import numpy as np

    from t5lit.config import ARCHITECTURES
    from t5lit.data.examples import PretrainFeatures
    from t5lit.data.vocab import load_vocabulary
    from t5lit.experiment import parse_cli_overrides

    kwargs = parse_cli_overrides(params)
    recipes = {arch: PretrainFeatures.build(objective, kwargs, arch, inputs_length)  # bad names fail first
               for arch in ARCHITECTURES.names()}
    budget = next(iter(recipes.values())).budget
    vocab = load_vocabulary(vocab_spec)
    text = text or ("Thank you for inviting me to your party last week. The food was delicious and the "
                    "music kept everyone dancing until late.")
    tokens = np.asarray(vocab.encode(text), dtype=np.int32)[: budget.raw]
    if len(tokens) == 0:
        raise ConfigError("data show: the text encodes to no tokens; give a --text with words in it")
    print(f"objective {objective} {kwargs or ''}  raw chunk {len(tokens)} tokens (a full chunk is {budget.raw}; "
          f"inputs {budget.inputs}, targets {budget.targets})")
    print("original:", " ".join(vocab.pieces(tokens.tolist())))
    example = None
    for arch, recipe in recipes.items():
        (example,) = recipe.examples(tokens[None], [np.random.default_rng(seed)], vocab)
        if arch == next(iter(recipes)):
            for key in ("inputs", "targets"):
                print(f"{key + ':':9s}", " ".join(vocab.pieces(example[key].tolist())))
        feats = recipe.features([example])
        print(f"\n[{arch}]")
        for side, key in (("encoder", "encoder_input_tokens"), ("decoder", "decoder_target_tokens")):
            arrays = {name: arr[0] for name, arr in feats.items() if name.startswith(side)}
            used = int(np.flatnonzero(arrays[key]).max()) + 1 if key in arrays and arrays[key].any() else 0
            for name, row in arrays.items():
                row = row[:used]
                shown = " ".join(vocab.pieces(row.tolist())) if name.endswith("tokens") else " ".join(
                    f"{v:g}" for v in row.tolist())
                print(f"  {name:26s} {shown}")


# ------------------------------------------------------------------------------------------ fit / check
FIT_ALIASES = {"trainer.max_steps": "steps", "trainer.val_check_interval": "every"}


def fit_main(args: list[str]) -> None:
    """``t5lit fit``: one stage of an experiment (default: the first), with Lightning-style flags."""
    from pathlib import Path

    import yaml

    from t5lit.experiment import parse_cli_overrides, resolve_experiment
    from t5lit.pipeline import run_experiment

    p = ArgumentParser(prog="t5lit fit", description="Run one stage of an experiment (default: its first, "
                                "usually pre-training). Flags --section.key VALUE change the experiment; "
                                "--trainer.max_steps N and --trainer.val_check_interval N set the stage's "
                                "steps and checkpoint interval, --trainer.default_root_dir DIR the run directory.")
    p.add_argument("--config", required=True, help="an experiment YAML file, e.g. experiments/debug.yaml")
    p.add_argument("--stage", default=None, help="the stage to run (default: the first of the plan)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<name>); reuse it to resume")
    p.add_argument("--print_config", action="store_true", help="print the resolved experiment and exit")
    p.add_argument("--restart", action="store_true",
                   help="the run directory holds another config: move that run aside and start again")
    ns, rest = p.parse_known_args(args)
    flags: list[str] = []
    i = 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--") or item == "--":
            p.error(f"unrecognized argument {item!r}; changes are --section.key VALUE or --section.key=VALUE")
        if "=" in item:
            flags.append(item[2:])
            i += 1
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            flags.append(f"{item[2:]}={rest[i + 1]}")
            i += 2
        else:
            p.error(f"{item} needs a value")
    overrides = parse_cli_overrides(flags)
    run_dir = overrides.pop("trainer.default_root_dir", None) or ns.run_dir
    aliases = {k: overrides.pop(k) for k in list(overrides) if k in FIT_ALIASES}
    exp = resolve_experiment(ns.config, overrides, source="flag")
    stage = next((s for s in exp.plan() if s.name == ns.stage), None) if ns.stage else exp.plan()[0]
    if stage is None:
        from t5lit.registry import unknown_name_message

        raise ConfigError(unknown_name_message("stage", ns.stage, [s.name for s in exp.plan()]))
    if aliases and stage.kind == "evaluate":
        raise ConfigError(f"--trainer.max_steps / --trainer.val_check_interval: stage {stage.name!r} does not train")
    if aliases:
        every = "checkpoint_every" if stage.kind == "pretrain" else "eval_every"
        section = {FIT_ALIASES[k].replace("every", every): v for k, v in aliases.items()}
        overrides.update({f"{stage.kind}.{k}": v for k, v in section.items()})
        if exp.stages is not None:
            raise ConfigError("--trainer.max_steps with an explicit stages: list; set the stage's steps in the file")
        exp = resolve_experiment(ns.config, overrides, source="flag")
    if ns.print_config:
        print(yaml.safe_dump(exp.to_dict(), sort_keys=False), end="")
        return
    out = Path(run_dir) if run_dir else Path("runs") / exp.name
    run_experiment(exp, out, only=[stage.name], restart=ns.restart)
    print(f"stage {stage.name!r} done: {out / stage.dir_name}")


def check_main(path: str, overrides: list[str], run_dir: str | None) -> None:
    """``t5lit check``: an experiment (or every row of a sweep) through every check a run makes first."""
    from pathlib import Path

    import yaml

    from t5lit.checks import check_experiment
    from t5lit.experiment import parse_cli_overrides, read_yaml, resolve_experiment

    data = read_yaml(path, "experiment or sweep")
    if "rows" in data or "space" in data:
        from t5lit.sweep.spec import check_sweep, load_sweep

        if overrides:
            raise ConfigError("t5lit check SWEEP takes no overrides; put them in the sweep's overrides:")
        spec = load_sweep(path, check_rows=False)
        checked = check_sweep(spec, deep=True)
        base = checked.pop("base")
        base = base.to_dict() if hasattr(base, "to_dict") else dict(base)
        print(yaml.safe_dump(base, sort_keys=False), end="")
        flat_base = _flat(base)
        for label, exp in checked.items():
            changed = {k: v for k, v in _flat(exp.to_dict()).items() if flat_base.get(k) != v}
            shown = ", ".join(f"{k}={v}" for k, v in changed.items()) or "(the base)"
            print(f"# ok {label}: {shown}")
        print(f"# ok: sweep {spec.study}, {len(checked)} variants x {len(spec.seeds)} seed(s), every one checked")
        return
    exp = resolve_experiment(path, parse_cli_overrides(overrides))
    out = Path(run_dir) if run_dir else Path("runs") / exp.name
    check_experiment(exp, out)
    print(yaml.safe_dump(exp.to_dict(), sort_keys=False), end="")
    print(f"# ok: {len(exp.plan())} stage(s): " + ", ".join(f"{s.name} ({s.kind})" for s in exp.plan()))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------ the parser
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="t5lit", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("fit", help="one stage of an experiment (see `t5lit fit --help`)", add_help=False)
    s = sub.add_parser("list", help="list the names a config may use")
    s.add_argument("kind", help=" | ".join(LIST_KINDS))

    s = sub.add_parser("run", help="one experiment: every stage -> results.json")
    s.add_argument("experiment", help="an experiment YAML, e.g. experiments/quickstart.yaml")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.steps=100 (values are YAML)")
    s.add_argument("--run-dir", default=None, help="run directory (default runs/<name>); reuse it to resume")
    s.add_argument("--restart", action="store_true",
                   help="the run directory holds another config: move that run aside and start again")

    s = sub.add_parser("check", help="check an experiment or every row of a sweep; print the resolved config")
    s.add_argument("path", help="an experiment or sweep YAML file")
    s.add_argument("overrides", nargs="*", help="dotted overrides of an experiment, e.g. finetune.lr=1e-4")
    s.add_argument("--run-dir", default=None, help="the run directory to check (default runs/<name>)")

    s = sub.add_parser("sweep", help="Optuna sweeps: run | status | report")
    ss = s.add_subparsers(dest="sweep_command", required=True)
    r = ss.add_parser("run", help="start workers on a sweep's study (re-run to continue after a crash)")
    r.add_argument("sweep", help="a sweep YAML file, e.g. sweeps/quickstart.yaml")
    r.add_argument("--storage", default=None, help="an RDB URL (postgresql://...) shared by machines; "
                   "default: a journal file beside the runs")
    r.add_argument("--devices", default=None, help="GPU ids, e.g. 0,1,2,3: one worker per GPU group")
    r.add_argument("--devices-per-trial", type=int, default=1, help="GPUs per trial (DDP when more than one)")
    r.add_argument("--workers", type=int, default=1, help="worker processes on CPU")
    r.add_argument("--out", default="runs/sweeps", help="where run directories and the journal go")
    r.add_argument("--retry-failed", action="store_true", help="give failed rows another attempt")
    r = ss.add_parser("report", help="the paper-style table, CSV, plots and TensorBoard text")
    r.add_argument("sweep", nargs="?", default=None, help="the sweep YAML file (or give --study)")
    r.add_argument("--study", default=None, help="the study name, when no sweep file is given")
    r.add_argument("--storage", default=None, help="the storage URL the sweep ran with (default: its journal)")
    r.add_argument("--out", default="runs/sweeps", help="the --out the sweep ran with")
    r.add_argument("--std-from", default=None, metavar="SWEEP",
                   help="bold within 2 std of the best, the std of that sweep's baseline over its seeds (Table 1's)")
    r = ss.add_parser("status", help="each row's state, attempts and last error")
    r.add_argument("sweep", nargs="?", default=None, help="the sweep YAML file (or give --study)")
    r.add_argument("--study", default=None, help="the study name, when no sweep file is given")
    r.add_argument("--storage", default=None, help="the storage URL the sweep ran with (default: its journal)")
    r.add_argument("--out", default="runs/sweeps", help="the --out the sweep ran with")

    s = sub.add_parser("eval", help="score a checkpoint (or the ensemble of several) on a task or mixture")
    s.add_argument("--checkpoint", required=True, nargs="+", help="a t5lit .ckpt (e.g. runs/x/finetune/glue/"
                   "best-glue_rte.ckpt); several: their ensemble (same architecture and vocabulary)")
    s.add_argument("--task", required=True, help="a task or mixture name (t5lit list tasks)")
    s.add_argument("--data_dir", default=None, help="the official files of the task (default: the hub)")
    s.add_argument("--vocab", default="builtin", help="vocabulary when the checkpoint does not name one")
    s.add_argument("--batch_size", type=int, default=32, help="examples decoded at once")
    s.add_argument("--max_examples", type=int, default=None, help="score only the first N of each task")
    s.add_argument("--num_beams", type=int, default=None, help="beam size (default: the checkpoint's, or the task's)")
    s.add_argument("--inputs_length", type=int, default=None, help="truncate inputs (default: the checkpoint's)")
    s.add_argument("--targets_length", type=int, default=None, help="truncate targets (default: the checkpoint's)")
    s.add_argument("--accelerator", default="auto", help="auto | cpu | gpu")

    s = sub.add_parser("predict", help="test-set predictions in each benchmark's submission format (Table 14)")
    s.add_argument("--checkpoint", required=True, nargs="+", help="a .ckpt, or a fine-tuning stage's directory (each "
                   "task predicted by its best-<task>.ckpt); several: their ensemble")
    s.add_argument("--task", required=True, nargs="+", help="glue, super_glue (their leaderboards' files, diagnostics "
                   "included), or tasks and mixtures")
    s.add_argument("--out", required=True,
                   help="the folder to write (glue/*.tsv, super_glue/*.jsonl, <task>.txt, zips)")
    s.add_argument("--data_dir", action="append", default=[], metavar="DIR | NAME=DIR",
                   help="the official files: for every task, or for one task, mixture or benchmark (repeatable)")
    s.add_argument("--split", default="test", help="the split to predict (default: test)")
    s.add_argument("--vocab", default="builtin", help="vocabulary when the checkpoint does not name one")
    s.add_argument("--batch_size", type=int, default=32, help="examples decoded at once")
    s.add_argument("--max_examples", type=int, default=None, help="predict only the first N of each task")
    s.add_argument("--num_beams", type=int, default=None, help="beam size (default: the checkpoint's, or the task's)")
    s.add_argument("--inputs_length", type=int, default=None, help="truncate inputs (default: the checkpoint's)")
    s.add_argument("--targets_length", type=int, default=None, help="truncate targets (default: the checkpoint's)")
    s.add_argument("--accelerator", default="auto", help="auto | cpu | gpu")

    s = sub.add_parser("vocab", help="SentencePiece vocabularies")
    vs = s.add_subparsers(dest="vocab_command", required=True)
    r = vs.add_parser("train", help="train a unigram SentencePiece model with T5's conventions")
    r.add_argument("--corpus", required=True, help="a corpus name (t5lit list corpora)")
    r.add_argument("--size", type=int, required=True, help="number of SentencePiece pieces (T5: 32000)")
    r.add_argument("--out", required=True, help="the .model file to write")
    r.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="corpus option, e.g. paths=data/*.txt for --corpus files (values parsed as YAML)")
    r.add_argument("--max-documents", type=int, default=200_000, help="documents read for training")

    s = sub.add_parser("data", help="inspect the data pipeline")
    ds = s.add_subparsers(dest="data_command", required=True)
    r = ds.add_parser("show", help="what an objective does to a text, for every architecture")
    r.add_argument("--objective", required=True, help="an objective name (t5lit list objectives)")
    r.add_argument("--text", default=None, help="the text (default: a sample sentence)")
    r.add_argument("--param", action="append", default=[], help="objective parameter, e.g. noise_density=0.5")
    r.add_argument("--inputs-length", type=int, default=32, help="the inputs length the budget is computed at")
    r.add_argument("--vocab", default="builtin", help="builtin, builtin:<pieces> or a .model file")
    r.add_argument("--seed", type=int, default=0, help="the example's random generator seed")

    s = sub.add_parser("export-hf", help="write a checkpoint as a Hugging Face model directory: weights, tokenizer, "
                       "model card (AutoModelForSeq2SeqLM / AutoTokenizer / pipeline load it)")
    s.add_argument("checkpoint", help="a t5lit .ckpt of an encoder-decoder, e.g. runs/x/pretrain/final.ckpt")
    s.add_argument("out_dir", help="the directory to write (created; files of the same name are replaced)")
    s.add_argument("--vocab", default=None, help="the SentencePiece .model (or builtin, builtin:<pieces>) when the "
                   "checkpoint's own vocabulary is not found here")
    return p


def export_hf_main(checkpoint: str, out_dir: str, vocab: str | None = None) -> None:
    from t5lit.export import export_checkpoint

    out = export_checkpoint(checkpoint, out_dir, vocab)
    print(f"wrote {out}: the model (T5ForConditionalGeneration), its tokenizer and a model card (README.md); "
          f"AutoModelForSeq2SeqLM.from_pretrained and AutoTokenizer.from_pretrained load it")


def dispatch(argv: list[str]) -> None:
    if argv and argv[0] == "fit":
        fit_main(argv[1:])
        return
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if ns.command in ("run", "check"):  # argparse ends a nargs="*" positional at the first option: take the rest
        more = [e for e in extra if "=" in e and not e.startswith("-")]
        ns.overrides, extra = ns.overrides + more, [e for e in extra if e not in more]
    if extra:
        sub = getattr(ns, f"{ns.command.replace('-', '_')}_command", None)  # sweep run, vocab train, ...
        usage_error(" ".join(["t5lit", ns.command] + ([sub] if sub else [])),
                    f"unrecognized arguments: {' '.join(extra)}")
    if ns.command == "list":
        list_main(ns.kind)
    elif ns.command == "run":
        from t5lit.pipeline import run_cli

        run_cli(ns.experiment, ns.overrides, ns.run_dir, **({"restart": True} if ns.restart else {}))
    elif ns.command == "check":
        check_main(ns.path, ns.overrides, ns.run_dir)
    elif ns.command == "sweep":
        sweep_main(ns)
    elif ns.command == "eval":
        from t5lit.evaluate import evaluate_checkpoint

        evaluate_checkpoint(ns.checkpoint, ns.task, data_dir=ns.data_dir, vocab=ns.vocab, batch_size=ns.batch_size,
                            max_examples=ns.max_examples, num_beams=ns.num_beams, accelerator=ns.accelerator,
                            inputs_length=ns.inputs_length, targets_length=ns.targets_length)
    elif ns.command == "predict":
        from t5lit.predict import predict

        predict(ns.checkpoint, ns.task, ns.out, data_dir=ns.data_dir, split=ns.split, vocab=ns.vocab,
                batch_size=ns.batch_size, max_examples=ns.max_examples, num_beams=ns.num_beams,
                inputs_length=ns.inputs_length, targets_length=ns.targets_length, accelerator=ns.accelerator)
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
        export_hf_main(ns.checkpoint, ns.out_dir, ns.vocab)


def sweep_main(ns) -> None:
    from t5lit.sweep import report_cli, run_cli, status_cli

    if ns.sweep_command == "run":
        run_cli(ns)
    elif ns.sweep_command == "status":
        status_cli(ns)
    else:
        report_cli(ns)


def main(argv: list[str] | None = None) -> None:
    from t5lit.logs import quiet_known_warnings

    argv = sys.argv[1:] if argv is None else argv
    quiet_known_warnings()  # Lightning's known-harmless warnings and tips (t5lit/logs.py)
    try:
        dispatch(argv)
    except ConfigError as err:
        print(f"t5lit: error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in _ENVIRONMENT_ERRNOS:
            _internal_error(err, argv)
        where = f": {err.filename}" if err.filename else ""
        print(f"t5lit: error: {err.strerror}{where}; free space or fix the permissions, then run the same command "
              "again", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("t5lit: interrupted; the same command continues where it stopped", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - not a user's mistake: the traceback, then one line saying so
        pipeline = sys.modules.get("t5lit.pipeline")
        if pipeline is not None and isinstance(err, pipeline.TrialFailed):  # a result (divergence), not a bug
            print(f"t5lit: the run failed: {err}", file=sys.stderr)
            sys.exit(1)
        _internal_error(err, argv)


# A full disk, a read-only filesystem, missing permissions: the machine's state, not a bug in t5lit.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT}


def _internal_error(err: BaseException, argv: list[str]):
    """An unexpected exception: its traceback as usual, then one last line saying it is a bug; exit code 1."""
    import shlex
    import traceback

    traceback.print_exception(err)
    first = (str(err).strip().splitlines() or [""])[0][:300]
    print(f"t5lit: internal error: {type(err).__name__}: {first} -- this is a bug in t5lit; please report it "
          f"with the traceback above and the command: t5lit {shlex.join(argv)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
