"""The model checks of ``benchmarks/gpu_check.py`` (section ``cuda``), in a process of their own.

Tiny models (the ``tiny`` preset), fp32 unless said, on ``--device`` (cuda; cpu in the dry run):

- ``paths/<arch>/<attention>``: the model with ``attention`` (sdpa or flex), run eagerly and through
  ``torch.compile``, against the eager reference backend on the same weights and the same packed batch: the
  logits, the loss, the gradient of the relative position bias tables (``*.rel_bias.*``, which reaches flex
  through its ``score_mod``) and every other gradient.
- ``generate/<arch>/sdpa``: greedy decoding with the key/value cache equals the argmax of full passes,
  token by token; beam search of 3 on the batch equals each row decoded alone.
- ``bf16/<arch>/<attention>``: compiled training steps under bf16 autocast with fused AdamW on one batch:
  every loss and gradient norm finite, the loss falling (encoder-decoder with sdpa and dropout 0.1, the
  prefix LM with flex; the throughput section of gpu_check trains all three compiled in bf16 at t5-base).

The batches and the reference decoder come from the test suite (tests/model/test_fastpaths.py,
tests/model/test_generate.py). On CPU FlexAttention is its dense reference with its CUDA-only guards lifted,
as tests/model/test_fastpaths.py's ``flex_on_cpu`` does, and ``--compile-backend eager`` traces with Dynamo
without generating kernels: the dry run checks this script, not the kernels. Results go to ``--json`` after
every check, so a run stopped at its time limit still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # t5lit and tests/ from the checkout, without installing

import torch  # noqa: E402

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
PATHS = (("encoder_decoder", "sdpa"), ("encoder_decoder", "flex"), ("decoder_only", "flex"), ("prefix_lm", "flex"))
# (architecture, attention, dropout; flex has no attention dropout). Two compiles: CUDA's default path with
# dropout and flex's most involved mask; gpu_check's throughput section trains all three compiled in bf16.
BF16 = (("encoder_decoder", "sdpa", 0.1), ("prefix_lm", "flex", 0.0))
RTOL, ATOL = 1e-3, 1e-4  # fp32, as tests/model/test_fastpaths.py's CUDA test


def lift_flex_guards() -> None:
    """CPU only: flex_attention's uncompiled dense reference, which has a backward on any device."""
    import warnings

    import torch.nn.attention.flex_attention as fa

    warnings.filterwarnings("ignore", message=".*flex_attention.*")  # "call it compiled": not the point here

    from t5lit.model import layers, stack

    fa._validate_device = lambda *args: None
    layers.check_flex_device = stack.check_flex_device = lambda x: None


def compile_model(model, backend: str):
    """``torch.compile(model, backend=backend)``; backend "none": the model itself (a dry run's shortcut)."""
    return model if backend == "none" else torch.compile(model, backend=backend)


def build_pair(arch: str, attention: str, device, **changes):
    """(reference: eager backend, model: ``attention``), the same weights, on ``device``, train mode."""
    from t5lit.config import preset_config
    from t5lit.model.architectures import build_model

    torch.manual_seed(0)
    cfg = preset_config("tiny", arch=arch, **changes)
    ref = build_model(cfg.replace(attention="eager"))
    model = build_model(cfg.replace(attention=attention))
    model.load_state_dict(ref.state_dict())
    return ref.to(device).train(), model.to(device).train()


def on(device, f: dict, targets, weights):
    return {k: v.to(device) for k, v in f.items()}, targets.to(device), weights.to(device)


def forward_backward(model, params_of, f, targets, weights):
    """logits, loss, {name: grad} of one forward + backward (``params_of``: the module holding the weights)."""
    from t5lit.lit_module import weighted_cross_entropy

    params_of.zero_grad(set_to_none=True)
    logits = model(f)
    loss = weighted_cross_entropy(logits, targets, weights)[0]
    loss.backward()
    return logits.detach().float(), loss.detach().float(), {n: p.grad.detach().clone()
                                                           for n, p in params_of.named_parameters()}


def compare(got, want) -> dict:
    """Errors of (logits, loss, grads) against the reference; raises AssertionError beyond tolerance."""
    from tests.model.test_fastpaths import assert_grads_close

    logits, loss, grads = got
    ref_logits, ref_loss, ref_grads = want
    bias = [n for n in ref_grads if ".rel_bias." in n]
    assert bias, "no relative position bias parameter found"
    out = {"logits_max_abs_err": float((logits - ref_logits).abs().max()),
           "loss_abs_err": float((loss - ref_loss).abs()),
           "bias_grad_max_rel_err": max(float((grads[n] - ref_grads[n]).abs().max()
                                              / ref_grads[n].abs().max().clamp_min(1e-12)) for n in bias),
           "bias_grad_norm": sum(float(ref_grads[n].norm()) for n in bias)}
    torch.testing.assert_close(logits, ref_logits, rtol=RTOL, atol=ATOL, msg=lambda m: f"logits: {m}")
    torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL, msg=lambda m: f"loss: {m}")
    assert out["bias_grad_norm"] > 0, "the relative position bias got no gradient"
    assert_grads_close(grads, ref_grads, rtol=RTOL, atol=ATOL)
    return out


def check_paths(arch: str, attention: str, device, backend: str) -> dict:
    """Eager and compiled ``attention`` against the eager reference: forward, loss, bias gradient, gradients."""
    from tests.model.test_fastpaths import batch

    ref, model = build_pair(arch, attention, device)
    f, targets, weights = on(device, *batch(arch, packed=True))
    want = forward_backward(ref, ref, f, targets, weights)
    out = {"eager": compare(forward_backward(model, model, f, targets, weights), want)}
    t0 = time.perf_counter()
    compiled = compile_model(model, backend)
    out["compiled"] = compare(forward_backward(compiled, model, f, targets, weights), want)
    out["compile_and_first_step_s"] = time.perf_counter() - t0
    return out


def check_generation(arch: str, attention: str, device) -> dict:
    """Greedy with the cache = argmax of full passes token by token; beam search batched = row by row."""
    from t5lit.config import preset_config
    from t5lit.model.architectures import build_model
    from t5lit.model.generate import generate
    from tests.model.test_generate import batch_inputs, reference_greedy, rows

    torch.manual_seed(0)  # untied, as tests/model/test_generate.py: a random tied model echoes its input
    model = build_model(preset_config("tiny", arch=arch, tie_word_embeddings=False, attention=attention))
    model = model.to(device).eval()
    x = batch_inputs()  # (3, 6) right-padded
    greedy = generate(model, x.to(device), max_new_tokens=6).cpu()

    def full_pass(features):  # the reference decoder builds its features on the CPU
        return model({k: v.to(device) for k, v in features.items()}).cpu()

    for b in range(x.shape[0]):
        want = reference_greedy(full_pass, arch, x[b], 6, eos_id=1)
        assert rows(greedy[b:b + 1])[0] == want, f"greedy row {b}: {rows(greedy[b:b + 1])[0]} != {want}"
    beams = rows(generate(model, x.to(device), max_new_tokens=5, num_beams=3).cpu())
    for b in range(x.shape[0]):
        alone = generate(model, x[b:b + 1, : int((x[b] != 0).sum())].to(device), max_new_tokens=5, num_beams=3)
        assert rows(alone.cpu())[0] == beams[b], f"beam row {b}: alone {rows(alone.cpu())[0]} != batched {beams[b]}"
    return {"greedy_tokens": int((greedy != 0).sum()), "beam_rows": len(beams)}


def check_bf16_training(arch: str, attention: str, dropout: float, device, backend: str, steps: int = 8) -> dict:
    """Compiled training steps under bf16 autocast, fused AdamW, one packed batch: finite and falling."""
    from t5lit.lit_module import weighted_cross_entropy
    from tests.model.test_fastpaths import batch

    _, model = build_pair(arch, attention, device, dropout_rate=dropout)
    compiled = compile_model(model, backend)
    f, targets, weights = on(device, *batch(arch, packed=True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    losses, norms = [], []
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = weighted_cross_entropy(compiled(f), targets, weights)[0]
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses + norms), f"non-finite: losses {losses}, grad norms {norms}"
    assert losses[-1] < losses[0], f"the loss did not fall: {losses}"
    return {"losses": losses, "grad_norms": norms, "dropout": dropout}


def run_checks(device, backend: str, path: str, train_steps: int = 8) -> dict:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    report = {"device": str(device), "compile_backend": backend, "checks": []}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
        torch.set_float32_matmul_precision("highest")  # fp32 comparisons: no TF32
    else:
        lift_flex_guards()
    plan = [(f"paths/{a}/{att}", check_paths, (a, att, device, backend)) for a, att in PATHS]
    plan += [(f"generate/{a}/sdpa", check_generation, (a, "sdpa", device)) for a in ARCHS]
    plan += [(f"bf16/{a}/{att}", check_bf16_training, (a, att, p, device, backend, train_steps)) for a, att, p in BF16]
    for name, fn, args in plan:
        t0 = time.perf_counter()
        record = {"name": name}
        try:
            record.update(fn(*args))
            record["status"] = "passed"
        except AssertionError as err:
            record.update(status="failed", error=str(err).strip().splitlines()[0][:500])
        except Exception as err:  # a crash in one check must not hide the others
            record.update(status="error", error=f"{type(err).__name__}: {str(err).strip()[:500]}",
                          traceback=traceback.format_exc()[-3000:])
        record["seconds"] = round(time.perf_counter() - t0, 2)
        report["checks"].append(record)
        print(f"{record['status']:7s} {name} ({record['seconds']:.1f} s) {record.get('error', '')}", flush=True)
        with open(path + ".tmp", "w") as fh:
            json.dump(report, fh, indent=1)
        os.replace(path + ".tmp", path)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: Dynamo only)")
    p.add_argument("--train-steps", type=int, default=8, help="steps of each bf16 training check")
    p.add_argument("--threads", type=int, default=None, help="torch threads (the CPU dry run: 1)")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    report = run_checks(torch.device(a.device), a.compile_backend, a.json, a.train_steps)
    return 0 if all(c["status"] == "passed" for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
