"""Facts about the machine and software a benchmark ran on (Linux /proc, no psutil)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["load_average", "machine_facts", "package_versions"]

# Instruction-set flags that decide which onnxruntime/oneDNN kernels run.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            break  # first processor block is enough
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    """1, 5, 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def package_versions(names: tuple[str, ...] = ("onnxruntime", "onnxruntime-openvino", "numpy", "pydicom", "pillow",
                                               "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "onnx",
                                               "tensorflow", "keras")) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _int8_kernel() -> str:
    from deltaiqa_lite.model.cpu import cpu_info

    return cpu_info().kernel()


def machine_facts() -> dict:
    """CPU model and flags, core counts, memory, OS, Python and package versions."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_family_model_stepping": [cpu.get("cpu family"), cpu.get("model"), cpu.get("stepping")],
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags],
        "int8_kernel": _int8_kernel(),
        "hypervisor": "hypervisor" in flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "load_average_at_start": load_average(),
    }
