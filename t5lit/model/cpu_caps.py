"""What this CPU offers the training step: its model and the instruction-set extensions that decide how fast
fp32 and bf16 matrix products can run.

- ``amx``: Intel's Advanced Matrix Extensions (``amx_tile`` + ``amx_bf16``: Sapphire Rapids and later): bf16
  tiles, several times AVX-512's bf16 throughput; oneDNN uses them for bf16 matmuls.
- ``avx512_bf16``: bf16 dot products in AVX-512 registers (Cooper Lake, Zen 4 and later): bf16 at about twice
  fp32's rate.
- ``avx512``: AVX-512 without bf16: bf16 is converted to fp32 and is not faster than fp32.
- ``avx2``: 256-bit vectors and FMA; bf16 is emulated, slower than fp32.
- ``baseline``: none of these.

``cpu_capabilities()`` reads ``/proc/cpuinfo`` once (and torch's own view, ``torch.backends.cpu.
get_cpu_capability()``); ``read_cpuinfo(text)`` parses any cpuinfo text, so the detection is tested on the
flags of CPUs the test machine is not. ``benchmarks/train_throughput.py`` prints them beside its figures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# The flags reported, in the order printed.
ISA_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "avx2",
             "fma", "f16c")
TIERS = ("amx", "avx512_bf16", "avx512", "avx2", "baseline")


@dataclass(frozen=True)
class CpuCaps:
    """A CPU's model name, its flags, torch's capability string (``AVX512``, ``AVX2``, ...) and its vendor
    (``GenuineIntel``, ``AuthenticAMD``, ...: MKL, which PyTorch's fp32 matmuls call, runs its AVX-512 kernels
    on Intel's CPUs only)."""

    model: str
    flags: frozenset
    torch_capability: str | None = None
    vendor: str = "unknown"

    @property
    def tier(self) -> str:
        """The best of TIERS this CPU has."""
        f = self.flags
        if {"amx_tile", "amx_bf16"} <= f:
            return "amx"
        if "avx512_bf16" in f:
            return "avx512_bf16"
        if "avx512f" in f:
            return "avx512"
        if "avx2" in f:
            return "avx2"
        return "baseline"

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls run faster than fp32 here (AMX or AVX-512 bf16), so bf16-mixed training pays."""
        return self.tier in ("amx", "avx512_bf16")

    def isa(self) -> list[str]:
        return [f for f in ISA_FLAGS if f in self.flags]

    def describe(self) -> str:
        """``"AMD EPYC: avx512_bf16 tier (avx512f avx512_bf16 ...); torch: AVX512"``."""
        torch_part = f"; torch: {self.torch_capability}" if self.torch_capability else ""
        return f"{self.model}: {self.tier} tier ({' '.join(self.isa()) or 'no listed extensions'}){torch_part}"


def read_cpuinfo(text: str, torch_capability: str | None = None) -> CpuCaps:
    """The capabilities in a ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features``; the first CPU's)."""
    model, flags, vendor = "unknown CPU", None, "unknown"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("model name", "hardware") and model == "unknown CPU":
            model = value.strip() or model
        elif key in ("flags", "features") and flags is None:
            flags = frozenset(value.split())
        elif key == "vendor_id" and vendor == "unknown":
            vendor = value.strip() or vendor
    return CpuCaps(model, flags or frozenset(), torch_capability, vendor)


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> CpuCaps:
    """This machine's CpuCaps (``/proc/cpuinfo``; elsewhere only torch's capability and the platform name)."""
    import platform

    try:
        import torch

        torch_capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an old torch without the call
        torch_capability = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return read_cpuinfo(f.read(), torch_capability)
    except OSError:
        return CpuCaps(platform.processor() or "unknown CPU", frozenset(), torch_capability)
