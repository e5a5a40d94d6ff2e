"""Training throughput and peak memory: t5lit's model beside transformers' T5, in one run.

Each measurement runs in its own subprocess (so peak memory is that model's alone: CUDA's
max_memory_allocated, or the process's peak RSS on CPU), doing forward + backward + optimizer step
(AdamW for both) on the same random batch; it reports the median tokens/s over timed steps after warm-up.

    python benchmarks/train_throughput.py --d-model 256 --heads 8 --d-ff 1024 --layers 4 --vocab 8192 \\
        --batch 8 --inputs 512 --targets 114 --precision fp32 --steps 10
    python benchmarks/train_throughput.py --preset t5-base --batch 128 --precision bf16 --device cuda --compile

Prints ours, theirs, and the ratio ours/theirs for tokens/s and for memory per token; ``--json PATH``
writes them. ``--archs`` adds our decoder-only and prefix-LM models at equal parameters (one stack of
encoder + decoder depth over the concatenated inputs + targets).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def build_config(a):
    from t5lit.config import preset_config

    over = {"dropout_rate": 0.0, "attention": a.attention}
    if a.preset:
        cfg = preset_config(a.preset, **over)
    else:
        cfg = preset_config("t5-small", d_model=a.d_model, num_heads=a.heads, d_kv=a.d_model // a.heads, d_ff=a.d_ff,
                            num_encoder_layers=a.layers, num_decoder_layers=a.layers, vocab_size=a.vocab, **over)
    return cfg


def make_batch(cfg, a, arch, device):
    import torch

    g = torch.Generator().manual_seed(0)
    B, Li, Lt = a.batch, a.inputs, a.targets

    def ids(*shape):
        return torch.randint(3, cfg.vocab_size - 100, shape, generator=g).to(device)

    if arch == "encoder_decoder":
        tgt = ids(B, Lt)
        dec_in = torch.cat([torch.zeros(B, 1, dtype=tgt.dtype, device=device), tgt[:, :-1]], 1)
        return {"encoder_input_tokens": ids(B, Li), "decoder_input_tokens": dec_in,
                "decoder_target_tokens": tgt, "decoder_loss_weights": torch.ones(B, Lt, device=device)}
    L = Li + Lt
    tgt = ids(B, L)
    dec_in = torch.cat([torch.zeros(B, 1, dtype=tgt.dtype, device=device), tgt[:, :-1]], 1)
    w = torch.zeros(B, L, device=device)
    w[:, Li:] = 1
    batch = {"decoder_input_tokens": dec_in, "decoder_target_tokens": tgt, "decoder_loss_weights": w}
    if arch == "prefix_lm":
        cat = torch.zeros(B, L, dtype=tgt.dtype, device=device)
        cat[:, : Li + 1] = 1
        batch["decoder_causal_attention"] = cat
    return batch


def measure(a) -> dict:
    """Runs inside the subprocess: one model, returns its figures."""
    import resource

    import torch

    from t5lit.lit_module import weighted_cross_entropy

    torch.manual_seed(0)
    device = torch.device(a.device)
    cfg = build_config(a)
    arch = a.which if a.which != "hf" else "encoder_decoder"
    if a.which == "hf":
        from transformers import T5ForConditionalGeneration

        from t5lit.model.hf import config_to_hf

        model = T5ForConditionalGeneration(config_to_hf(cfg)).to(device)

        def loss_fn(batch):
            out = model(input_ids=batch["encoder_input_tokens"], decoder_input_ids=batch["decoder_input_tokens"])
            return weighted_cross_entropy(out.logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]
    else:
        from t5lit.model.architectures import build_model

        if arch != "encoder_decoder":
            cfg = cfg.replace(arch=arch, num_encoder_layers=0,
                              num_decoder_layers=cfg.num_encoder_layers + cfg.num_decoder_layers)
        model = build_model(cfg).to(device)
        fwd = torch.compile(model) if a.compile else model

        def loss_fn(batch):
            return weighted_cross_entropy(fwd(batch), batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda",
                            foreach=None if device.type == "cuda" else True)
    batch = make_batch(cfg, a, arch, device)
    tokens = a.batch * (a.inputs + a.targets)
    amp = a.precision == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {"which": a.which, "tokens_per_sec": tokens / statistics.median(times), "peak_bytes": peak,
            "bytes_per_token": peak / tokens, "loss": float(loss), "params": n_params,
            "median_step_s": statistics.median(times)}


def run_child(argv: list[str], which: str) -> dict:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, __file__, *argv, "--which", which, "--child"], capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"benchmark of {which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    p.add_argument("--device", default="cpu")
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "flex", "eager"])
    p.add_argument("--compile", action="store_true", help="torch.compile our model")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--archs", action="store_true", help="also our decoder-only and prefix-LM at equal params")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None)
    p.add_argument("--which", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.child:
        if a.which == "hf" and a.hf_precision:
            a.precision = a.hf_precision
        print(json.dumps(measure(a)))
        return
    given = list(argv if argv is not None else sys.argv[1:])
    if "--json" in given:  # the children print JSON on stdout; only the parent writes the file
        i = given.index("--json")
        del given[i:i + 2]
    raw = given
    ours = run_child(raw, "encoder_decoder")
    theirs = run_child(raw, "hf")
    rows = [("t5lit encoder_decoder", ours), ("transformers T5", theirs)]
    if a.archs:
        rows += [(f"t5lit {arch}", run_child(raw, arch)) for arch in ("decoder_only", "prefix_lm")]
    setting = (f"{a.preset or f'{a.layers}+{a.layers} layers d_model {a.d_model}'} batch {a.batch} "
               f"{a.inputs}/{a.targets} {a.precision} (transformers {a.hf_precision or a.precision}) on {a.device}"
               f"{' compiled' if a.compile else ''}")
    print(setting)
    print(f"{'model':24s} {'params':>12s} {'tokens/s':>12s} {'peak MiB':>10s} {'bytes/token':>12s} {'loss':>8s}")
    for name, r in rows:
        print(f"{name:24s} {r['params']:>12,d} {r['tokens_per_sec']:>12,.0f} {r['peak_bytes'] / 2**20:>10,.0f} "
              f"{r['bytes_per_token']:>12,.0f} {r['loss']:>8.3f}")
    speed = ours["tokens_per_sec"] / theirs["tokens_per_sec"]
    mem = ours["bytes_per_token"] / theirs["bytes_per_token"]
    print(f"ratio ours/transformers: tokens/s {speed:.2f}x, peak memory per token {mem:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"setting": setting, "args": vars(a), "results": dict(rows),
                       "speed_ratio": speed, "memory_ratio": mem}, f, indent=2)


if __name__ == "__main__":
    main()
