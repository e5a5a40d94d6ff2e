"""Greedy and beam search with the key/value cache, for every architecture. Tiny fp32 models, CPU."""

import pytest
import torch

from t5lit.config import preset_config
from t5lit.model.architectures import build_model
from t5lit.model.generate import beam_search, brevity_penalty, generate, greedy, sequence_score
from t5lit.registry import ConfigError

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
V = 1152


def make(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    # untied (T5 1.1 layout): a random tied model mostly echoes its input token, a degenerate test case
    return build_model(preset_config("tiny", arch=arch, tie_word_embeddings=False)).eval()


def batch_inputs(seed: int = 1) -> torch.Tensor:
    """(3, 6) right-padded with 0: lengths 6, 2 and 4."""
    x = torch.randint(3, V - 100, (3, 6), generator=torch.Generator().manual_seed(seed))
    x[1, 2:] = 0
    x[2, 4:] = 0
    return x


def reference_greedy(model, arch: str, row: torch.Tensor, max_new: int, eos_id: int) -> list[int]:
    """Argmax of full forward passes, one token at a time (no cache)."""
    row = row[row != 0]
    out: list[int] = []
    for _ in range(max_new):
        dec = torch.tensor([0] + ([] if arch == "encoder_decoder" else row.tolist()) + out)[None]
        f = {"decoder_input_tokens": dec}
        if arch == "encoder_decoder":
            f["encoder_input_tokens"] = row[None]
        if arch == "prefix_lm":
            f["decoder_causal_attention"] = (torch.arange(dec.shape[1]) <= len(row)).long()[None]
        with torch.no_grad():
            out.append(int(model(f)[0, -1].argmax()))
        if out[-1] == eos_id:
            break
    return out


def rows(t: torch.Tensor) -> list[list[int]]:
    """Each row without its trailing zeros."""
    out = []
    for r in t.tolist():
        while r and r[-1] == 0:
            r.pop()
        out.append(r)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_equals_stepwise_argmax_of_full_passes(arch):
    model = make(arch)
    x = batch_inputs()
    free = generate(model, x, max_new_tokens=6, eos_id=1)
    # make row 0 stop early: call the token it generates third the EOS
    eos = int(free[0, 2])
    got = generate(model, x, max_new_tokens=6, eos_id=eos)
    assert got.shape[0] == 3 and got.shape[1] <= 6 and got.dtype == torch.long
    assert got[0, 2] == eos and (got[0, 3:] == 0).all()
    for b in range(3):
        assert rows(got[b:b + 1])[0] == reference_greedy(model, arch, x[b], 6, eos)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_batch_equals_each_row_alone(arch, num_beams):
    model = make(arch)
    x = batch_inputs(seed=2)
    together = rows(generate(model, x, max_new_tokens=5, num_beams=num_beams))
    for b in range(3):
        alone = generate(model, x[b:b + 1, : int((x[b] != 0).sum())], max_new_tokens=5, num_beams=num_beams)
        assert rows(alone)[0] == together[b]


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search_scores_at_least_greedy(arch):
    model = make(arch, seed=3)
    x = batch_inputs(seed=4)
    for eos in (1, None):  # None: the token greedy emits second in row 0 becomes EOS, so beams can finish
        eos = eos if eos is not None else int(greedy(model, x, 4)[0, 1])
        g = greedy(model, x, 4, eos_id=eos)
        b = beam_search(model, x, 4, num_beams=4, alpha=0.6, eos_id=eos)
        g_score = sequence_score(model, x, g, alpha=0.6, eos_id=eos)
        b_score = sequence_score(model, x, b, alpha=0.6, eos_id=eos)
        assert (b_score >= g_score - 1e-5).all(), (b_score, g_score)


def test_sequence_score_matches_full_pass_and_penalty():
    model = make("encoder_decoder")
    x = batch_inputs()[:1]
    targets = torch.tensor([[17, 42, 5, 0]])  # EOS 5: length 3
    dec = torch.tensor([[0, 17, 42]])
    with torch.no_grad():
        logp = model({"encoder_input_tokens": x, "decoder_input_tokens": dec}).log_softmax(-1)
    expected = logp[0, [0, 1, 2], [17, 42, 5]].sum() / brevity_penalty(3, 0.6)
    torch.testing.assert_close(sequence_score(model, x, targets, 0.6, eos_id=5)[0], expected, rtol=1e-5, atol=1e-5)
    assert brevity_penalty(1, 0.6) == 1.0


def test_generate_restores_training_mode():
    model = make("decoder_only").train()
    generate(model, batch_inputs(), max_new_tokens=2)
    assert model.training


def test_bad_arguments_raise_one_line_errors():
    model, x = make("encoder_decoder"), batch_inputs()
    for kwargs, match in [(dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1, got 0"),
                          (dict(max_new_tokens=2, num_beams=0), "num_beams must be an integer >= 1, got 0")]:
        with pytest.raises(ConfigError, match=match):
            generate(model, x, **kwargs)
    with pytest.raises(ConfigError, match=r"needs inputs as a \(batch, length >= 1\) integer tensor"):
        generate(model, x.float(), max_new_tokens=2)
    bad = x.clone()
    bad[0, 0] = V
    with pytest.raises(ConfigError, match=f"inputs holds token id {V}; valid ids are 0..{V - 1}"):
        generate(model, bad, max_new_tokens=2)
