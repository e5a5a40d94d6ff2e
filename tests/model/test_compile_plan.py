"""Whether a stage compiles its model (t5lit/model/compile_plan.py): by run length on CPU, always on CUDA,
as runtime.compile says when it says."""

import pytest

from t5lit.model.compile_plan import COMPILE_SECONDS_PER_LAYER, GAIN, decide_compile

# The benchmark's model: 4+4 layers, ~27 MFLOP per token for training, 8 rows of 512 + 114 tokens.
BENCH = dict(flops_per_step=27e6 * 8 * 626, layers=8, threads=2, tier="avx512_bf16")


def test_short_cpu_runs_stay_eager_and_long_fp32_runs_compile():
    use, why = decide_compile(None, device="cpu", steps=500, precision="32-true", **BENCH)
    assert not use and "costs more than it saves" in why and "500 steps" in why
    use, why = decide_compile(None, device="cpu", steps=100_000, precision="32-true", **BENCH)
    assert use and "saves more than it costs" in why


def test_the_break_even_follows_the_estimate():
    """Compile exactly when steps x step seconds x gain exceeds the compile seconds."""
    step_s = BENCH["flops_per_step"] / (45e9 * 2)
    cost = COMPILE_SECONDS_PER_LAYER * 8
    even = cost / (step_s * GAIN["fp32"])
    assert not decide_compile(None, device="cpu", steps=int(even * 0.95), precision="32", **BENCH)[0]
    assert decide_compile(None, device="cpu", steps=int(even * 1.05), precision="32", **BENCH)[0]
    # more threads: a faster step saves less per step, but the compilation is shorter too
    more = {**BENCH, "threads": 8}
    assert not decide_compile(None, device="cpu", steps=int(even * 0.95), precision="32", **more)[0]


def test_bf16_on_cpu_never_compiles_by_itself():
    """Compiled bf16-mixed training measured no faster than eager on CPU (RESULTS.md section 10)."""
    use, why = decide_compile(None, device="cpu", steps=10**7, precision="bf16-mixed", **BENCH)
    assert not use and "no faster" in why


@pytest.mark.parametrize("request_", [True, False])
def test_runtime_compile_decides_when_set(request_):
    use, why = decide_compile(request_, device="cpu", steps=10, precision="32", **BENCH)
    assert use is request_ and why == f"runtime.compile: {str(request_).lower()}"


def test_cuda_compiles():
    assert decide_compile(None, device="cuda", steps=10, precision="bf16-mixed", **BENCH) == (True, "on cuda")
