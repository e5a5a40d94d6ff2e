"""The `t5lit` command: LightningCLI fit on experiments/debug.yaml, list, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from t5lit.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "t5lit.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_list_kinds(capsys):
    main(["list", "architectures"])
    assert capsys.readouterr().out.split() == ["encoder_decoder", "decoder_only", "prefix_lm"]
    main(["list", "objectives"])
    assert "span_corruption" in capsys.readouterr().out.split()


def test_unknown_names_fail_in_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["list", "objectivs"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'objectives'" in lines[0]


@pytest.mark.slow
def test_fit_debug_config_end_to_end(tmp_path):
    out = run("fit", "--config", "experiments/debug.yaml", f"--trainer.default_root_dir={tmp_path}",
              "--trainer.max_steps=3", "--trainer.val_check_interval=3")
    assert out.returncode == 0, out.stderr[-3000:]
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts, "fit wrote no checkpoint"


@pytest.mark.slow
def test_fit_with_linked_arch_and_bad_preset(tmp_path):
    out = run("fit", "--config", "experiments/debug.yaml", f"--trainer.default_root_dir={tmp_path}",
              "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--model.arch=prefix_lm")
    assert out.returncode == 0, out.stderr[-3000:]
    out = run("fit", "--config", "experiments/debug.yaml", f"--trainer.default_root_dir={tmp_path}",
              "--model.preset=t5-bass")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("t5lit: error: unknown preset 't5-bass'")
