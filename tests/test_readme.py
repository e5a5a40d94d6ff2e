"""README.md true to the letter: every command of its ```bash blocks is extracted and, in README order, run as
written in a sandbox (a temporary folder with copies of experiments/ and sweeps/, so that runs/ and every
output land there), with each experiment file shrunk to a few steps on the built-in data (``SIZES`` merged
into every experiment file, ``OFFLINE`` into the paper baseline, the root of them all): the quickstart sweep,
single runs, checks, fit, eval, list, data show, export-hf, sweep report and status. A command that needs
what an offline CPU machine lacks (GPUs, a database server) runs as ``t5lit check`` on the same file and
overrides: every check the run makes first; the rest (installing packages, the test suite itself,
multi-machine launches, the GPU check script, C4) is skipped with its reason, each listed in ``SKIPPED``. A
command that is not one t5lit invocation when pasted into a shell (a ``|``, ``;``, ``&``, ``<`` or ``>``
outside quotes) fails, as does any command that errors."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Every experiment file: a few steps of a tiny model (each file's own keys come after its scale's settings).
SIZES = {"model": {"preset": "tiny"},
         "pretrain": {"steps": 2, "checkpoint_every": 2, "batch_size": 4, "inputs_length": 32, "val_examples": 4,
                      "num_workers": 0, "warmup_steps": 1},
         "finetune": {"steps": 2, "eval_every": 2, "batch_size": 4, "inputs_length": 64, "targets_length": 8,
                      "num_workers": 0},
         "evaluation": {"max_val_examples": 4, "max_decode_length": 8},
         "trainer": {"accelerator": "cpu", "precision": "32-true", "log_every_n_steps": 1}}
# The paper baseline (the root of every experiment): the built-in corpus, vocabulary and tasks, no network.
OFFLINE = {"model": {"vocab": "builtin"}, "pretrain": {"corpus": "builtin", "corpus_options": {}},
           "finetune": {"tasks": ["builtin_kind"]}}
# Commands skipped, by their first words, and why.
SKIPPED = {
    ("pip",): "installs packages (network)",
    ("python", "-m", "pytest"): "the test suite itself",
    ("torchrun",): "a multi-machine launch: tests/test_multinode.py runs it on one machine",
    ("srun",): "a SLURM launch: tests/test_multinode.py runs it on one machine",
    ("python", "benchmarks/data_throughput.py"): "a benchmark: tests/data/test_data_benchmark.py runs it shrunk",
    ("python", "benchmarks/gpu_check.py"): "the GPU check: tests/test_gpu_check.py runs its --dry-run",
    ("t5lit", "vocab", "train", "--corpus", "c4"): "streams C4 (network); tests/test_cli.py trains on builtin",
    ("t5lit", "sweep", "run", "sweeps/table8_datasets.yaml"): "streams Table 8's hub corpora (network); "
                                                              "tests/data/test_corpora.py reads them from local copies",
}
OPERATORS = set("|&;<>()")
INPUT_OPTIONS = ("--checkpoint", "--data_dir", "--vocab")
MADE_BY_README = ("runs/quickstart", "runs/sweeps/quickstart")  # by its `t5lit run` and `t5lit sweep run` lines


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def readme_commands() -> list[str]:
    """Each command line of README.md's bash blocks (continuations joined, comments dropped), in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    lines = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if shlex.split(line, comments=True):
                lines.append(line)
    return lines


def words_of(line: str) -> list[str]:
    """The shell words of a line; a shell operator outside quotes (a pipe, ...) is an error: pasted into a
    shell, the line would not be the one command it shows."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split, lex.commenters = True, "#"
    words = list(lex)
    ops = [w for w in words if w and set(w) <= OPERATORS]
    assert not ops, f"README command {line.strip()!r}: {' '.join(ops)} makes it a shell pipeline or list"
    return words


def inputs(args: list[str]) -> list[str]:
    """The files a t5lit command reads: the values of --checkpoint, --data_dir and --vocab (``NAME=DIR`` too),
    and export-hf's checkpoint."""
    out, reading = [], False
    for i, a in enumerate(args):
        if a.startswith("--"):
            reading = a in INPUT_OPTIONS
        elif reading or (args[0] == "export-hf" and i == 1):
            out.append(a.split("=", 1)[-1])
    return out


def plan(words: list[str], cwd: Path | None = None) -> tuple[str, list[str] | None]:
    """("run" | "check" | "skip: <why>", the t5lit arguments to run). With ``cwd``, a command that reads files
    neither the repository nor an earlier README command makes (placeholders such as a.ckpt, a benchmark's
    data under /data) is skipped, naming them; one that reads an earlier command's outputs (runs/quickstart,
    runs/sweeps) runs, and fails if they are missing. A paper sweep (not the quickstart's) runs as ``t5lit check``."""
    env = []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before the command
        env.append(words[0].split("=", 1)[1])
        words = words[1:]
    for prefix, why in SKIPPED.items():
        if tuple(words[:len(prefix)]) == prefix:
            return f"skip: {why}", None
    assert words[0] == "t5lit", f"README command {shlex.join(words)!r}: not t5lit and not in SKIPPED"
    args = words[1:]
    if cwd is not None:
        missing = [f for f in [*env, *inputs(args)] if not (cwd / f).exists() and not f.startswith(MADE_BY_README)]
        if missing:
            return f"skip: reads files the README does not make ({', '.join(missing)})", None
    gpus = any(a.startswith("--devices") for a in args) or any(
        re.fullmatch(r"trainer\.devices=(\d+)", a) and int(a.split("=")[1]) > 1 for a in args)
    database = any(a.startswith("postgresql://") or a.startswith("mysql://") for a in args)
    scaled = any(a.startswith("scale=") and a != "scale=tiny" for a in args)
    # The paper's sweeps (tens of rows) are checked row by row; tests/test_repository_files.py runs each of their
    # rows one shrunk step. The quickstart sweep runs whole.
    study = args[:2] == ["sweep", "run"] and Path(args[2]).stem != "quickstart"
    if args[:2] == ["sweep", "run"] and (gpus or database or study):
        return "check", ["check", args[2]]  # every row, as the run checks it first
    if args[0] == "run" and (gpus or scaled):
        return "check", ["check", *[a for a in args[1:] if not a.startswith("--")]]
    return "run", args


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    box = tmp_path_factory.mktemp("readme")
    for folder in ("experiments", "sweeps"):
        shutil.copytree(REPO / folder, box / folder)
    for path in (box / "experiments").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text()) or {}
        root = path.relative_to(box / "experiments") == Path("paper/baseline.yaml")
        extra = merge(SIZES, OFFLINE) if root else SIZES
        extra = {k: v for k, v in extra.items() if not (k in data and data[k] is None)}  # `pretrain: null` stays
        path.write_text(yaml.safe_dump(merge(data, extra), sort_keys=False))
    return box


def t5lit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "t5lit.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_every_command_is_one_command_and_known():
    lines = readme_commands()
    assert len(lines) >= 15
    for line in lines:
        plan(words_of(line))  # no shell operators; t5lit or a listed skip


@pytest.mark.slow
def test_readme_commands_run(sandbox):
    done, skipped = [], []
    for line in readme_commands():
        how, args = plan(words_of(line), sandbox)
        if args is None:
            skipped.append(f"{line.strip()}  ({how})")
            continue
        out = t5lit(args, sandbox)
        assert out.returncode == 0, f"README command {line.strip()!r} ({how}: t5lit {shlex.join(args)}) failed:\n" \
                                    f"{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
        done.append(f"{how}: {line.strip()}")
    print("\n".join(["ran:", *done, "skipped:", *skipped]))
    assert any(d.startswith("run: t5lit sweep run sweeps/quickstart.yaml") for d in done)
