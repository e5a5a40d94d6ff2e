"""Training throughput and peak memory: t5lit's model beside transformers' T5, in one run.

Each measurement runs in its own subprocess, so peak memory is that model's alone, doing forward + backward +
optimizer step (fused AdamW for both) on the same random batch (made by each architecture's feature
converter); on CPU our model runs with ``t5lit.model.cpu.apply_cpu_fast_paths`` applied, as a T5LitModule
training on CPU gets it (``--plain``: without); it reports the median tokens/s over the timed
steps after warm-up. Peak memory is what the training step holds at its highest, weights, gradients, optimizer
state and activations together: on CUDA ``max_memory_allocated``; on CPU the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before the timed steps) minus its resident set after the imports,
before the model is built (so the Python, torch and transformers libraries do not count). ``act.`` is that
peak minus the resident set between steps (weights and optimizer state); ``saved`` counts the bytes of the
tensors autograd keeps for backward in one forward (each storage once, parameters excluded), the activation
memory free of allocator slack. ``--repeats N`` alternates the models N times (a busy machine slows them
alike) and reports each one's median run. Figures and their commands: benchmarks/RESULTS.md.

    python benchmarks/train_throughput.py --d-model 256 --heads 8 --d-ff 1024 --layers 4 --vocab 8192 \\
        --batch 8 --inputs 512 --targets 114 --precision fp32 --steps 10
    python benchmarks/train_throughput.py --preset t5-base --batch 128 --precision bf16 --device cuda --compile

Prints ours, theirs, and the ratio ours/theirs for tokens/s and for memory per token; on CPU also the CPU's
model and ISA tier (t5lit/model/cpu_caps.py), the machine's fp32 and bf16 matmul throughput at the model's
feed-forward shapes, measured in the same run, and each model's training FLOP/s as a share of it (the
matmul FLOPs of ``ArchSpec.train_flops`` per token x tokens/s); ``--json PATH`` writes them. ``--archs``
adds our decoder-only and prefix-LM models at equal parameters (one stack of encoder + decoder depth over the
concatenated inputs + targets).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# Runnable from a checkout without installing the package: the repository root goes first on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_config(a):
    from t5lit.config import preset_config

    over = {"dropout_rate": a.dropout, "attention": a.attention}
    if a.preset:
        cfg = preset_config(a.preset, **over)
    else:
        cfg = preset_config("t5-small", d_model=a.d_model, num_heads=a.heads, d_kv=a.d_model // a.heads, d_ff=a.d_ff,
                            num_encoder_layers=a.layers, num_decoder_layers=a.layers, vocab_size=a.vocab, **over)
    return cfg


def make_batch(cfg, a, arch, device):
    """A batch of ``a.batch`` random examples (inputs of ``a.inputs`` tokens, targets of ``a.targets``) through
    the architecture's own feature converter: unpacked, no padding; decoder-only rows hold both parts."""
    import numpy as np
    import torch

    from t5lit.features import converter_for

    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, cfg.vocab_size - 100, (n,), generator=g).numpy().astype(np.int32)

    examples = [{"inputs": ids(a.inputs), "targets": ids(a.targets)} for _ in range(a.batch)]
    features = converter_for(arch, a.inputs, a.targets)(examples)
    return {k: (torch.from_numpy(v).long() if v.dtype.kind == "i" else torch.from_numpy(v)).to(device)
            for k, v in features.items()}


def _rss(field: str) -> int:
    """VmRSS or VmHWM of this process in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set (Linux >= 4.0)
        return True
    except OSError:
        return False


def saved_activation_bytes(model, loss_fn, batch, amp: bool, device) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward (each storage once, parameters
    excluded): the activation memory a training step holds at its peak, free of allocator slack."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params and not isinstance(t, torch.nn.Parameter):
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(batch)
    del loss
    return sum(seen.values())


def measure(a) -> dict:
    """Runs inside the subprocess: one model, returns its figures."""
    import torch

    device = torch.device(a.device)
    if device.type == "cpu" and (a.malloc == "both" or (a.malloc == "ours" and a.which != "hf")):
        from t5lit.model.cpu import tune_allocator

        tune_allocator()  # what a t5lit run's set-up does when it trains on CPU
    from t5lit.config import ARCHITECTURES
    from t5lit.lit_module import weighted_cross_entropy
    from t5lit.model.architectures import build_model
    from t5lit.model.cpu import apply_cpu_fast_paths
    from t5lit.model.hf import to_hf_model  # imports transformers: libraries load before the baseline

    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else _rss("VmRSS")
    torch.manual_seed(0)
    cfg = build_config(a)
    arch = a.which if a.which != "hf" else "encoder_decoder"
    if not ARCHITECTURES.get(arch).has_encoder:  # one stack as deep as encoder + decoder: equal parameters
        cfg = cfg.replace(arch=arch, num_encoder_layers=0,
                          num_decoder_layers=cfg.num_encoder_layers + cfg.num_decoder_layers)
    model = build_model(cfg)
    if a.which == "hf":  # the same weights, converted: both models start from the same loss
        ours, model = model, to_hf_model(model, cfg)
        del ours
        model = model.to(device)

        def loss_fn(batch):
            out = model(input_ids=batch["encoder_input_tokens"], decoder_input_ids=batch["decoder_input_tokens"])
            return weighted_cross_entropy(out.logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]
    else:
        model = model.to(device)
        if device.type == "cpu" and not a.plain:
            apply_cpu_fast_paths(model)  # as T5LitModule applies them when it trains on CPU
        fwd = torch.compile(model) if a.compile else model

        def loss_fn(batch):
            return weighted_cross_entropy(fwd(batch), batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # the same optimizer for both
    batch = make_batch(cfg, a, arch, device)
    tokens = a.batch * (a.inputs + a.targets)
    amp = a.precision == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    step()  # the first step: with --compile it includes the compilation
    first = time.perf_counter() - t0
    for _ in range(a.warmup - 1):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        steady = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats()
    else:
        steady = _rss("VmRSS")
        reset = _reset_peak_rss()
    load = os.getloadavg()[0]
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _rss("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB
    saved = saved_activation_bytes(model, loss_fn, batch, amp, device)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    median = statistics.median(times)
    return {"which": a.which, "tokens_per_sec": tokens / median, "median_step_s": median, "first_step_s": first,
            "step_s": times, "peak_bytes": peak - base, "bytes_per_token": (peak - base) / tokens,
            "activation_bytes": peak - steady, "saved_for_backward_bytes": saved, "loss": float(loss),
            "params": n_params,
            "load_average_1min": [load, os.getloadavg()[0]]}


def measure_matmul(a) -> dict:
    """Runs inside a subprocess: the machine's matmul throughput (TFLOP/s) in fp32 and bf16 at the model's
    shapes, the feed-forward's two products ((batch x inputs, d_model) @ (d_model, d_ff) and back), with the
    benchmark's threads: the limit the training step's matrix work is measured against. Each dtype two ways,
    ``torch.mm`` (fp32: MKL; bf16: PyTorch hands it to oneDNN) and oneDNN's linear directly
    (``mkldnn._linear_pointwise``, where this build has it), and the faster counts: on non-Intel CPUs MKL runs
    only AVX2 kernels, so ``torch.mm`` alone would understate the machine in fp32. The best of several timed
    rounds of about 0.2 s each, after a warm-up; ``<dtype>_library`` names the faster way ("mm" or
    "onednn")."""
    import torch

    m, k, n = a.batch * a.inputs, a.d_model, a.d_ff
    if a.preset:
        cfg = build_config(a)
        k, n = cfg.d_model, cfg.d_ff
    out = {"shape": [m, k, n]}
    onednn = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        g = torch.Generator().manual_seed(0)
        x, w1 = torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)
        w2 = torch.randn(n, k, generator=g).to(dtype)
        w1t, w2t = w1.t().contiguous(), w2.t().contiguous()  # (out, in): the linear layout
        flops = 2 * m * k * n * 2  # both products

        def mm(x=x, w1=w1, w2=w2):
            torch.mm(torch.mm(x, w1), w2)

        def dnnl(x=x, w1t=w1t, w2t=w2t):
            lin = torch.ops.mkldnn._linear_pointwise
            lin(lin(x, w1t, None, "none", [], ""), w2t, None, "none", [], "")

        for library, work in (("mm", mm), ("onednn", dnnl))[: 2 if onednn else 1]:
            for _ in range(3):
                work()
            best = float("inf")
            for _ in range(5):
                reps, t0 = 0, time.perf_counter()
                while True:
                    work()
                    reps += 1
                    elapsed = time.perf_counter() - t0
                    if elapsed > 0.2:
                        break
                best = min(best, elapsed / reps)
            out[f"{name}_{library}_tflops"] = flops / best / 1e12
        faster = max(("mm", "onednn")[: 2 if onednn else 1], key=lambda lib: out[f"{name}_{lib}_tflops"])
        out[f"{name}_tflops"], out[f"{name}_library"] = out[f"{name}_{faster}_tflops"], faster
    return out


def flops_per_token(a) -> float:
    """Training matmul FLOPs (forward + backward, ``ArchSpec.train_flops``) per token of the encoder-decoder at
    the benchmark's lengths: what both models compute, whatever their kernels."""
    cfg = build_config(a)
    return cfg.spec.train_flops(cfg, a.inputs, a.targets) / (a.inputs + a.targets)


def run_child(argv: list[str], which: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--which", which, "--child"], capture_output=True,
                         text=True, env=dict(os.environ))
    if out.returncode != 0:
        raise SystemExit(f"benchmark of {which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment(a) -> dict:
    """Device, versions and command, for RESULTS.md."""
    import platform

    import torch
    import transformers

    if a.device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
    else:
        name = platform.processor() or "cpu"
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {"device": a.device, "device_name": name, "cpu_count": os.cpu_count(),
            "threads": a.threads or torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help="a t5lit preset (overrides the size flags)")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4, help="encoder and decoder depth each")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--inputs", type=int, default=512)
    p.add_argument("--targets", type=int, default=114)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--hf-precision", choices=["fp32", "bf16"], default=None,
                   help="transformers' precision (default: the same as ours)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout_rate of both models (T5's presets use 0.1; default 0: pre-training as T5 1.1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "flex", "eager"])
    p.add_argument("--compile", action="store_true", help="torch.compile our model")
    p.add_argument("--plain", action="store_true",
                   help="CPU: our model without t5lit.model.cpu.apply_cpu_fast_paths (plain PyTorch modules)")
    p.add_argument("--malloc", choices=["ours", "both", "none"], default="ours",
                   help="CPU: which processes keep freed memory (t5lit.model.cpu.tune_allocator, applied by "
                        "a t5lit run's set-up on CPU; default: ours, as users of each get it)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--archs", action="store_true", help="also our decoder-only and prefix-LM at equal params")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each model; the median is reported")
    p.add_argument("--json", default=None)
    p.add_argument("--which", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.child:
        if a.which == "matmul":
            print(json.dumps(measure_matmul(a)))
            return
        if a.which == "hf" and a.hf_precision:
            a.precision = a.hf_precision
        print(json.dumps(measure(a)))
        return
    given = list(argv if argv is not None else sys.argv[1:])
    if "--json" in given:  # the children print JSON on stdout; only the parent writes the file
        i = given.index("--json")
        del given[i:i + 2]
    names = ["encoder_decoder", "hf"] + (["decoder_only", "prefix_lm"] if a.archs else [])
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(a.repeats):  # alternate, so a machine busy with other work slows every model alike
        for n in names:
            runs[n].append(run_child(given, n))

    def median_run(rs: list[dict]) -> dict:
        best = sorted(rs, key=lambda r: r["tokens_per_sec"])[(len(rs) - 1) // 2]
        return dict(best, runs_tokens_per_sec=[r["tokens_per_sec"] for r in rs])

    results = {n: median_run(rs) for n, rs in runs.items()}
    limits = run_child(given, "matmul") if a.device == "cpu" else None
    label = {"encoder_decoder": "t5lit encoder_decoder", "hf": "transformers T5", "decoder_only": "t5lit decoder_only",
             "prefix_lm": "t5lit prefix_lm"}
    ours, theirs = results["encoder_decoder"], results["hf"]
    setting = (f"{a.preset or f'{a.layers}+{a.layers} layers d_model {a.d_model}'} batch {a.batch} "
               f"{a.inputs}/{a.targets} {a.precision} (transformers {a.hf_precision or a.precision}) on {a.device}"
               f"{' compiled' if a.compile else ''}{' without CPU fast paths' if a.plain else ''}"
               f"{f', dropout {a.dropout}' if a.dropout else ''}"
               f"{f', malloc tuned: {a.malloc}' if a.device == 'cpu' else ''}, "
               f"{a.repeats} run(s) x {a.steps} steps")
    print(setting)
    print(f"{'model':24s} {'params':>12s} {'tokens/s':>10s} {'peak MiB':>9s} {'act. MiB':>9s} "
          f"{'saved MiB':>9s} {'bytes/token':>12s} {'loss':>7s}")
    for n in names:
        r = results[n]
        print(f"{label[n]:24s} {r['params']:>12,d} {r['tokens_per_sec']:>10,.0f} {r['peak_bytes'] / 2**20:>9,.0f} "
              f"{r['activation_bytes'] / 2**20:>9,.0f} {r['saved_for_backward_bytes'] / 2**20:>9,.0f} "
              f"{r['bytes_per_token']:>12,.0f} {r['loss']:>7.3f}")
    speed = ours["tokens_per_sec"] / theirs["tokens_per_sec"]
    mem = ours["bytes_per_token"] / theirs["bytes_per_token"]
    print(f"ratio ours/transformers: tokens/s {speed:.2f}x, peak memory per token {mem:.2f}x")
    if a.compile:
        print(f"first step (compiling): {ours['first_step_s']:.1f} s; then {ours['median_step_s']:.3f} s a step")
    from t5lit.model.cpu import plan_fast_paths
    from t5lit.model.cpu_caps import cpu_capabilities

    caps = cpu_capabilities() if a.device == "cpu" else None
    paths = plan_fast_paths() if caps is not None and not a.plain else None
    utilisation = {}
    if limits is not None:
        per_token = flops_per_token(a)
        m, k, n = limits["shape"]
        print(f"CPU: {caps.describe()}")
        if paths is not None:
            print(f"fast paths: {paths.describe()}")
        print(f"matmul limit at ({m} x {k}) @ ({k} x {n}) and back, {a.threads or 'default'} threads: fp32 "
              f"{limits['fp32_tflops']:.3f} TFLOP/s ({limits['fp32_library']}), bf16 {limits['bf16_tflops']:.3f} "
              f"TFLOP/s ({limits['bf16_library']}); training step: {per_token / 1e6:.1f} MFLOP per token")
        for key, precision in (("encoder_decoder", a.precision), ("hf", a.hf_precision or a.precision)):
            used = results[key]["tokens_per_sec"] * per_token / 1e12
            utilisation[label[key]] = used / limits[f"{precision}_tflops"]
            print(f"  {label[key]:24s} {used:.3f} TFLOP/s = {100 * utilisation[label[key]]:.1f}% of the "
                  f"{precision} matmul limit")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"setting": setting, "environment": environment(a), "args": vars(a),
                       "results": {label[n]: results[n] for n in names}, "speed_ratio": speed,
                       "memory_ratio": mem, "matmul_limit": limits, "utilisation": utilisation,
                       "cpu": None if caps is None else {"model": caps.model, "vendor": caps.vendor, "tier": caps.tier,
                                                         "isa": caps.isa(), "torch_capability": caps.torch_capability},
                       "fast_paths": None if paths is None else sorted(paths.enabled)},
                      f, indent=2)


if __name__ == "__main__":
    main()
