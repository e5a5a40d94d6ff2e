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


# ---- t5lit data show ---------------------------------------------------------------------------------------

TEXT = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun all day long."


def show(capsys, *args) -> dict[str, list[str]]:
    """``t5lit data show`` output as {section: lines}; the header section is "" and arch sections are named."""
    main(["data", "show", "--text", TEXT, *args])
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections[current] = []
        elif line.strip():
            sections[current].append(line)
    return sections


def feature(lines: list[str], name: str) -> list[str]:
    return next(line.split()[1:] for line in lines if line.split()[0] == name)


def test_data_show_span_corruption_for_every_architecture(capsys):
    out = show(capsys, "--objective", "span_corruption")
    assert list(out) == ["", "encoder_decoder", "decoder_only", "prefix_lm"]
    head = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in out[""][1:]}
    assert out[""][0].startswith("objective span_corruption") and set(head) == {"original", "inputs", "targets"}
    inputs, targets = head["inputs"], head["targets"]
    assert "<extra_id_0>" in inputs and targets[0] == "<extra_id_0>" and inputs[-1] == targets[-1] == "</s>"
    assert "<extra_id_" not in " ".join(head["original"])
    enc = out["encoder_decoder"]
    assert feature(enc, "encoder_input_tokens") == inputs and feature(enc, "decoder_target_tokens") == targets
    assert feature(enc, "decoder_input_tokens") == ["<pad>", *targets[:-1]]  # shifted right
    for arch in ("decoder_only", "prefix_lm"):
        assert "encoder_input_tokens" not in " ".join(out[arch])
        assert feature(out[arch], "decoder_target_tokens") == inputs + targets
        weights = feature(out[arch], "decoder_loss_weights")
        assert weights == ["0"] * len(inputs) + ["1"] * len(targets)  # loss on the targets only
    assert feature(out["prefix_lm"], "decoder_causal_attention") == (["1"] * (len(inputs) + 1)
                                                                     + ["0"] * (len(targets) - 1))
    assert "decoder_causal_attention" not in " ".join(out["decoder_only"])


def test_data_show_other_objectives_and_parameters(capsys):
    out = show(capsys, "--objective", "iid_denoising", "--param", "noise_density=0.5")
    head = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in out[""][1:]}
    assert "noise_density" in out[""][0]
    assert "<extra_id_0>" in head["inputs"] and "<extra_id_1>" in head["targets"]
    assert all(arch in out for arch in ("encoder_decoder", "decoder_only", "prefix_lm"))
    out = show(capsys, "--objective", "prefix_lm")  # no sentinels: the text split into a prefix and its rest
    head = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in out[""][1:]}
    assert head["inputs"][:-1] + head["targets"][:-1] == head["original"]
    assert not any(p.startswith("<extra_id_") for p in head["inputs"] + head["targets"])


def test_data_show_unknown_objective_or_parameter_is_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["data", "show", "--objective", "span_corrupton"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown objective 'span_corrupton'; did you mean 'span_corruption'?" in lines[0]
    assert "valid: bert_style, " in lines[0] and "prefix_lm" in lines[0] and "ul2" in lines[0]
    with pytest.raises(SystemExit) as err:
        main(["data", "show", "--objective", "span_corruption", "--param", "noise_rate=0.5"])
    assert err.value.code == 2
    assert capsys.readouterr().err.strip().endswith("no parameter 'noise_rate'; valid: noise_density, "
                                                    "mean_noise_span_length")


# ---- t5lit vocab train -------------------------------------------------------------------------------------

def test_vocab_train_on_the_builtin_corpus(tmp_path, capsys):
    from t5lit.data.vocab import load_vocabulary

    out = tmp_path / "new" / "spiece.model"
    main(["vocab", "train", "--corpus", "builtin", "--size", "400", "--out", str(out), "--max-documents", "800"])
    assert capsys.readouterr().out.strip() == f"wrote {out}: 500 ids (400 pieces + 100 extra ids)"
    vocab = load_vocabulary(str(out))
    assert vocab.pieces([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.id_to_piece(vocab.vocab_size - 1) == "<extra_id_0>" and vocab.sentinel_id(0) == 499
    assert vocab.decode(vocab.encode("Return the list <extra_id_0> items.")) == "Return the list <extra_id_0> items."


def test_vocab_train_on_local_files_and_errors(tmp_path, capsys):
    from itertools import islice

    from t5lit.data.sources import iter_documents
    from t5lit.data.vocab import Vocabulary

    docs = list(islice(iter_documents("builtin", "train"), 300))
    (tmp_path / "a.txt").write_text("\n\n".join(docs[:150]))
    (tmp_path / "b.txt").write_text("\n\n".join(docs[150:]))
    out = tmp_path / "files.model"
    main(["vocab", "train", "--corpus", "files", "--option", f"paths={tmp_path}/*.txt", "--size", "350",
          "--out", str(out)])
    vocab = Vocabulary(out)
    assert vocab.vocab_size == 450 and vocab.id_to_piece(449) == "<extra_id_0>" and vocab.pieces([0])[0] == "<pad>"
    capsys.readouterr()
    for args, message in [(["--corpus", "files"], "corpus 'files' needs the option paths"),
                          (["--corpus", "files", "--option", f"paths={tmp_path}/nope.txt"],
                           f"file not found: {tmp_path}/nope.txt"),
                          (["--corpus", "bultin"], "unknown corpus 'bultin'; did you mean 'builtin'?"),
                          (["--corpus", "builtin", "--option", "path=x"], "unknown option 'path' for corpus")]:
        with pytest.raises(SystemExit) as err:
            main(["vocab", "train", *args, "--size", "350", "--out", str(tmp_path / "x.model")])
        assert err.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "x.model").exists()


@pytest.mark.parametrize("argv, message", [
    (["sweep", "report", "--study", "nope"], "no sweep journal"),
    (["sweep", "run", "sweeps/nope.yaml"], "sweep file not found: sweeps/nope.yaml"),
    (["sweep", "run", "sweeps/quickstart.yaml", "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
     "cannot open sweep storage postgresql://u:***@127.0.0.1:1/db"),
])
def test_sweep_commands_fail_in_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir())  # nothing half-created


@pytest.mark.parametrize("argv", [
    ["run", "experiments/quickstart.yaml", "a.b=1", "--run-dir", "out", "c=2"],
    ["run", "--run-dir", "out", "experiments/quickstart.yaml", "a.b=1", "c=2"],
    ["run", "experiments/quickstart.yaml", "--run-dir", "out", "a.b=1", "c=2"],
])
def test_run_takes_overrides_before_and_after_options(argv, monkeypatch):
    import t5lit.pipeline

    seen = []
    monkeypatch.setattr(t5lit.pipeline, "run_cli", lambda *args: seen.append(args))
    main(argv)
    assert seen == [("experiments/quickstart.yaml", ["a.b=1", "c=2"], "out")]


def test_run_rejects_an_unknown_option(capsys):
    with pytest.raises(SystemExit):
        main(["run", "experiments/quickstart.yaml", "--run-dri", "out"])
    assert "unrecognized arguments: --run-dri" in capsys.readouterr().err
