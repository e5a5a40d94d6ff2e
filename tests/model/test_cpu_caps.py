"""The CPU capability detection, on the flags of CPUs this machine is not."""

from t5lit.model.cpu_caps import CpuCaps, cpu_capabilities, read_cpuinfo

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu
"""
GENOA = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx avx2 fma avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx avx2 fma avx512f\n"
HASWELL = "model name\t: Intel(R) Xeon(R) E5-2680 v3\nflags\t\t: fpu avx avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm bf16\nCPU implementer\t: 0x41\n"


def test_tiers_from_flags():
    spr = read_cpuinfo(SAPPHIRE_RAPIDS, "AVX512")
    assert spr.model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"  # the first CPU's
    assert spr.tier == "amx" and spr.native_bf16 and "amx_bf16" in spr.isa()
    assert spr.describe().startswith("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz: amx tier (amx_tile amx_bf16")
    assert spr.describe().endswith("; torch: AVX512")
    assert read_cpuinfo(GENOA).tier == "avx512_bf16" and read_cpuinfo(GENOA).native_bf16
    assert read_cpuinfo(SKYLAKE).tier == "avx512" and not read_cpuinfo(SKYLAKE).native_bf16
    assert read_cpuinfo(HASWELL).tier == "avx2" and read_cpuinfo(HASWELL).isa() == ["avx2", "fma"]
    arm = read_cpuinfo(ARM)
    assert arm.tier == "baseline" and arm.model == "unknown CPU" and "bf16" in arm.flags
    assert read_cpuinfo("").tier == "baseline"


def test_vendor():
    assert read_cpuinfo(SAPPHIRE_RAPIDS).vendor == "GenuineIntel"
    assert read_cpuinfo("vendor_id\t: AuthenticAMD\n" + GENOA).vendor == "AuthenticAMD"
    assert read_cpuinfo(ARM).vendor == "unknown"


def test_amx_needs_its_tiles():
    assert CpuCaps("x", frozenset({"amx_bf16", "avx512_bf16"})).tier == "avx512_bf16"  # no amx_tile: no AMX


def test_this_machine():
    caps = cpu_capabilities()
    assert caps.tier in ("amx", "avx512_bf16", "avx512", "avx2", "baseline") and caps.model
