"""The machine a measurement ran on: CPU model, usable cores, memory, GPU, the instruction-set flags
that INT8 and vector speed depend on, and the versions of the libraries that produced the numbers."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from .targets import usable_cores

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_tile", "amx_bf16",
             "asimddp", "i8mm")
LIBRARIES = ("supernas", "torch", "numpy", "onnx", "onnxruntime", "pymoo", "optuna", "scikit-learn", "ray",
             "transformers", "tokenizers", "kornia", "pydantic")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_flags() -> list[str]:
    """The instruction-set extensions INT8 and bfloat16 speed depend on that this CPU has (AVX2, AVX-512,
    VNNI, AVX-512 BF16, AMX; on ARM dot-product and i8mm), from ``/proc/cpuinfo``; empty where unknown."""
    present = set()
    for line in _cpuinfo():
        if line.lower().startswith(("flags", "features")):
            present.update(line.split(":", 1)[-1].split())
    return [f for f in CPU_FLAGS if f in present]


def cpu_model() -> str:
    names = [ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")]
    return names[0] if names else (platform.processor() or platform.machine())


def memory_gib() -> float | None:
    for line in (ln for ln in _meminfo() if ln.startswith("MemTotal:")):
        return int(line.split()[1]) / 2**20
    return None


def _meminfo() -> list[str]:
    try:
        return Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return []


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def describe_machine() -> str:
    """One line: CPU model, usable cores, memory, GPU, instruction flags."""
    mem = memory_gib()
    parts = [f"{cpu_model()}, {usable_cores()} cores" + (f", {mem:.0f} GiB" if mem else "")]
    if gpu := gpu_name():
        parts.append(gpu)
    flags = cpu_flags()
    parts.append(f"flags {' '.join(flags)}" if flags else "no AVX2/AVX-512/VNNI/AMX flags found")
    return "; ".join(parts)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries behind the numbers (read from their metadata, nothing imported)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
