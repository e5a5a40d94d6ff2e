"""Ensembles (Table 13): the members' per-step log-probabilities averaged, decoded by the one greedy and beam search
for every architecture. An ensemble of one equals its model; an ensemble of two identical models equals one; an
ensemble of two different models decodes the argmax of their averaged full-pass log-probabilities; members that
cannot decode together are one line, before any work; ``t5lit eval`` takes several checkpoints."""

import copy

import pytest
import torch

from t5lit.cli import main
from t5lit.config import preset_config
from t5lit.ensemble import Ensemble, check_members
from t5lit.evaluate import evaluate_checkpoint
from t5lit.model.architectures import build_model
from t5lit.model.generate import generate, sequence_score
from t5lit.registry import ConfigError

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
V = 1152


def make(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    # untied (T5 1.1 layout): a random tied model mostly echoes its input token, a degenerate test case
    return build_model(preset_config("tiny", arch=arch, tie_word_embeddings=False, **overrides)).eval()


def batch_inputs(seed: int = 1) -> torch.Tensor:
    """(3, 6) right-padded with 0: lengths 6, 2 and 4."""
    x = torch.randint(3, V - 100, (3, 6), generator=torch.Generator().manual_seed(seed))
    x[1, 2:] = 0
    x[2, 4:] = 0
    return x


def full_pass_logp(model, arch: str, row: torch.Tensor, out: list[int]) -> torch.Tensor:
    """log p(next | inputs, out) of one row from a full forward pass (no cache). (V,)"""
    dec = torch.tensor([0] + ([] if arch == "encoder_decoder" else row.tolist()) + out)[None]
    f = {"decoder_input_tokens": dec}
    if arch == "encoder_decoder":
        f["encoder_input_tokens"] = row[None]
    if arch == "prefix_lm":
        f["decoder_causal_attention"] = (torch.arange(dec.shape[1]) <= len(row)).long()[None]
    with torch.no_grad():
        return model(f)[0, -1].float().log_softmax(-1)


def reference_ensemble_greedy(models, arch: str, row: torch.Tensor, max_new: int, eos_id: int = 1) -> list[int]:
    """Argmax of the members' mean full-pass log-probabilities, one token at a time."""
    row = row[row != 0]
    out: list[int] = []
    for _ in range(max_new):
        logp = torch.stack([full_pass_logp(m, arch, row, out) for m in models]).mean(0)
        out.append(int(logp.argmax()))
        if out[-1] == eos_id:
            break
    return out


def rows(t: torch.Tensor) -> list[list[int]]:
    out = []
    for r in t.tolist():
        while r and r[-1] == 0:
            r.pop()
        out.append(r)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_an_ensemble_of_one_is_its_model(arch):
    model, x = make(arch), batch_inputs()
    one = Ensemble([model])
    for beams in (1, 3):
        assert torch.equal(generate(one, x, max_new_tokens=6, num_beams=beams),
                           generate(model, x, max_new_tokens=6, num_beams=beams)), beams
    logits, _ = model.begin_decoding(x)
    logp, cache = one.begin_decoding(x)
    assert torch.allclose(logp, logits.float().log_softmax(-1), atol=1e-6)
    targets = torch.tensor([[5, 9, 1], [7, 1, 0], [8, 8, 1]])
    assert torch.allclose(sequence_score(one, x, targets), sequence_score(model, x, targets), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_an_ensemble_of_two_identical_models_is_one_of_them(arch):
    model, x = make(arch), batch_inputs()
    twin = copy.deepcopy(model)
    two, one = Ensemble([model, twin]), Ensemble([model])
    for beams in (1, 4):
        ids = generate(two, x, max_new_tokens=6, num_beams=beams)
        assert torch.equal(ids, generate(one, x, max_new_tokens=6, num_beams=beams))
        assert torch.equal(ids, generate(model, x, max_new_tokens=6, num_beams=beams))
    (a, ca), (b, cb) = two.begin_decoding(x), one.begin_decoding(x)
    assert torch.equal(a, b)  # (p + p) / 2 == p exactly
    token = a.argmax(-1)
    assert torch.equal(two.decode_step(token, ca), one.decode_step(token, cb))


@pytest.mark.parametrize("arch", ARCHS)
def test_two_different_models_decode_the_argmax_of_their_mean_log_probabilities(arch):
    models, x = [make(arch, seed=0), make(arch, seed=1)], batch_inputs()
    ensemble = Ensemble(models)
    got = rows(generate(ensemble, x, max_new_tokens=5, num_beams=1))
    assert got == [reference_ensemble_greedy(models, arch, r, 5) for r in x]
    alone = [rows(generate(m, x, max_new_tokens=5, num_beams=1)) for m in models]
    assert got != alone[0] or got != alone[1]  # the ensemble is not just one of its members
    # beam search reorders every member's cache alike: each row's best beam scores at least the greedy one
    beam = generate(ensemble, x, max_new_tokens=5, num_beams=4)
    greedy_ids = generate(ensemble, x, max_new_tokens=5, num_beams=1)
    assert (sequence_score(ensemble, x, beam) >= sequence_score(ensemble, x, greedy_ids) - 1e-5).all()


def test_members_that_cannot_decode_together_are_one_line():
    with pytest.raises(ConfigError) as err:
        Ensemble([make("encoder_decoder"), make("decoder_only")])
    assert str(err.value) == ("ensemble members must share the architecture: member 0 is encoder_decoder, member 1 "
                              "is decoder_only")
    with pytest.raises(ConfigError, match="must share the vocabulary: member 0 has vocab_size 1152, member 1 has 2000"):
        Ensemble([make("prefix_lm"), make("prefix_lm", vocab_size=2000)])
    cfg = preset_config("tiny")
    with pytest.raises(ConfigError, match="a.ckpt was trained with builtin, b.ckpt with builtin:500"):
        check_members([cfg, cfg], ["a.ckpt", "b.ckpt"], ["builtin", "builtin:500"])
    check_members([cfg, cfg], ["a", "b"], ["builtin", "builtin:1000"])  # the same vocabulary, named two ways
    check_members([cfg, preset_config("tiny", d_model=96)], ["a", "b"])  # sizes may differ


# ---------------------------------------------------------------------------------------------- t5lit eval
def save_checkpoint(path, arch: str = "encoder_decoder", seed: int = 0, vocab: str = "builtin") -> str:
    """A t5lit checkpoint as a run writes it (model config and weights, decoding settings, data module)."""
    model = make(arch, seed)
    torch.save({"hyper_parameters": {"model_config": model.cfg.to_dict(), "num_beams": 1, "max_decode_length": 4},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "datamodule_hyper_parameters": {"vocab": vocab, "inputs_length": 64, "targets_length": 8}}, path)
    return str(path)


def test_eval_of_an_ensemble_of_one_checkpoint_twice_equals_the_checkpoint(tmp_path):
    a = save_checkpoint(tmp_path / "a.ckpt")
    b = save_checkpoint(tmp_path / "b.ckpt", seed=1)
    alone = evaluate_checkpoint(a, "builtin_kind", max_examples=8, accelerator="cpu", print_table=False)
    twice = evaluate_checkpoint([a, a], "builtin_kind", max_examples=8, accelerator="cpu", print_table=False)
    assert twice == alone
    both = evaluate_checkpoint([a, b], "builtin_kind", max_examples=8, accelerator="cpu", print_table=False)
    assert set(both) == {"builtin_kind"} and set(both["builtin_kind"]) == set(alone["builtin_kind"])


def test_eval_takes_several_checkpoints_and_refuses_mismatched_members_in_one_line(tmp_path, capsys):
    a = save_checkpoint(tmp_path / "a.ckpt")
    main(["eval", "--checkpoint", a, a, "--task", "builtin_kind", "--max_examples", "4", "--accelerator", "cpu"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("| builtin_kind | ")
    lm = save_checkpoint(tmp_path / "lm.ckpt", arch="decoder_only")
    other_vocab = save_checkpoint(tmp_path / "v.ckpt", vocab="builtin:500")
    for member, fragment in ((lm, f"{a} is encoder_decoder, {lm} is decoder_only"),
                             (other_vocab, f"{a} was trained with builtin, {other_vocab} with builtin:500")):
        with pytest.raises(SystemExit) as err:
            main(["eval", "--checkpoint", a, member, "--task", "builtin_kind"])
        assert err.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], lines
