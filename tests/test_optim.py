import math

import pytest
import torch

from t5lit.optim import build_optimizer, schedule_fn
from t5lit.registry import ConfigError


def test_inverse_sqrt_is_the_papers_schedule():
    f = schedule_fn("inverse_sqrt", warmup_steps=10_000)
    base = 0.01
    for step in (0, 1, 5_000, 9_999, 10_000, 40_000, 2**19):
        expected = 1 / math.sqrt(max(step + 1, 10_000))
        assert base * f(step) == pytest.approx(expected, rel=1e-12)


def test_constant_cosine_linear():
    assert schedule_fn("constant", 0)(123) == 1.0
    warm = schedule_fn("constant", 10)
    assert warm(0) == pytest.approx(0.1) and warm(9) == 1.0 and warm(50) == 1.0
    cos = schedule_fn("cosine", 10, total_steps=110, min_lr_ratio=0.1)
    assert cos(10) == pytest.approx(1.0) and cos(60) == pytest.approx(0.55) and cos(110) == pytest.approx(0.1)
    lin = schedule_fn("linear", 0, total_steps=100)
    assert lin(50) == pytest.approx(0.5) and lin(100) == 0.0


def test_schedule_and_optimizer_errors():
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'; did you mean 'cosine'"):
        schedule_fn("cosin", 0)
    with pytest.raises(ConfigError, match="needs total_steps"):
        schedule_fn("cosine", 10)
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], "adam", 1e-3)


def test_adafactor_scales_updates_by_parameter_rms():
    # T5's multiply_by_parameter_scale: a parameter 10x larger moves 10x more for the same gradient.
    small = torch.nn.Parameter(torch.full((4, 4), 0.1))
    large = torch.nn.Parameter(torch.full((4, 4), 1.0))
    opt = build_optimizer([small, large], "adafactor", lr=0.01)
    small.grad = torch.ones(4, 4)
    large.grad = torch.ones(4, 4)
    before = small.detach().clone(), large.detach().clone()
    opt.step()
    ds = (before[0] - small.detach()).abs().mean()
    dl = (before[1] - large.detach()).abs().mean()
    assert dl / ds == pytest.approx(10.0, rel=1e-3)
