"""Whether a stage compiles its model with torch.compile: on CUDA always; on CPU only when the run is long
enough to earn back the compilation.

torch.compile's CPU backend (inductor, C++ kernels) fuses the norms, residuals, softmax and the small
element-wise ops between the matrix products, which made a training step of the benchmark's model (4+4
layers, d_model 256, batch 8 x 512/114) about 10% faster in fp32 on a 2-core Zen 4, and no faster in
bf16-mixed, where the matrix products dominate (benchmarks/RESULTS.md section 10). Compiling that model took
about 140 s (fp32) and 225 s (bf16) on the same two cores, the time of ~80 and ~200 eager steps: a test, the
quickstart or a short fine-tuning run would finish later with it, not sooner.

``decide_compile`` weighs the two before the stage starts, from the stage's settings alone, so the decision is
the same for every process of a run and again when the run resumes (a timing taken at run time would not
be, and the compiled model rounds differently from the eager one):

    step seconds  ~ FLOPs per step / (the tier's training FLOP/s per thread x threads)
    saved         = steps x step seconds x gain          (gain: the measured fraction, per precision)
    cost          = COMPILE_SECONDS per layer x layers x 2 / min(threads, 8)   (its code generation runs
                    on the cores)
    compile iff saved > cost

The throughput table is what t5lit's eager training measured per thread, on the fast side (so the estimate
errs toward not compiling); an explicit ``runtime.compile: true | false`` overrides the decision either way.
"""

from __future__ import annotations

# Seconds per model layer (encoder + decoder) to compile the forward and backward with inductor on 2 threads:
# 141 s for the 8 layers of the benchmark's model, measured on a 2-core Zen 4 (RESULTS.md section 10).
COMPILE_SECONDS_PER_LAYER = 17.0
# The fraction of an eager CPU step the compiled step saves (same machine, same model).
GAIN = {"fp32": 0.10, "bf16": 0.0}
# Eager training FLOP/s per thread (the matmul FLOPs of ArchSpec.train_flops), by ISA tier and precision:
# measured on Zen 4 (avx512_bf16 tier) and, for amx, on the Xeon of issue 16's report; the others assumed
# no faster than fp32 on avx512_bf16.
TRAIN_FLOPS_PER_THREAD = {
    ("amx", "fp32"): 45e9, ("amx", "bf16"): 90e9,
    ("avx512_bf16", "fp32"): 45e9, ("avx512_bf16", "bf16"): 80e9,
    ("avx512", "fp32"): 45e9, ("avx512", "bf16"): 45e9,
    ("avx2", "fp32"): 30e9, ("avx2", "bf16"): 30e9,
    ("baseline", "fp32"): 10e9, ("baseline", "bf16"): 10e9,
}


def decide_compile(request: bool | None, *, device: str, steps: int, flops_per_step: float, precision: str,
                   layers: int, threads: int, tier: str) -> tuple[bool, str]:
    """-> (compile?, one line saying why). ``request``: runtime.compile (None: decide here); ``device``:
    "cpu" or "cuda"; ``precision``: "fp32" or "bf16" (bf16-mixed); ``tier``: ``CpuCaps.tier``."""
    if request is not None:
        return bool(request), f"runtime.compile: {str(bool(request)).lower()}"
    if device != "cpu":
        return True, f"on {device}"
    precision = "bf16" if precision.startswith("bf16") else "fp32"
    threads = max(1, threads)
    step_s = flops_per_step / (TRAIN_FLOPS_PER_THREAD.get((tier, precision), 10e9) * threads)
    saved = steps * step_s * GAIN[precision]
    cost = COMPILE_SECONDS_PER_LAYER * max(1, layers) * 2 / min(threads, 8)
    if GAIN[precision] <= 0:
        return False, (f"on CPU, compiled {precision} training measured no faster than eager; runtime.compile: "
                       "true compiles anyway")
    verdict = "saves more than it costs" if saved > cost else "costs more than it saves"
    return saved > cost, (f"on CPU, compiling (~{cost:.0f} s) {verdict}: ~{saved:.0f} s over {steps} steps of "
                          f"~{step_s:.2g} s; runtime.compile: true|false decides instead")
