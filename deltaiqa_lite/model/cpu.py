"""What this CPU's integer units can do for INT8 inference, and whether an INT8 model is safe on it.

onnxruntime's x86 kernels for uint8 x int8 convolutions and matrix products
differ by CPU: with VNNI (``avx512_vnni`` or ``avx_vnni``; AMX too) products
are accumulated in int32; without it (AVX2 only, or AVX-512 without VNNI)
pairs of products are first added in int16 *with saturation*
(``VPMADDUBSW``). A model whose weights use the full int8 range can then give
other answers on such a CPU. Models built by ``python -m convert quantize``
say in their card whether they are safe by construction
(``quantization.saturation_safe``).

Flags are read from ``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS;
elsewhere only the architecture is known. onnxruntime itself exposes no ISA
information to Python.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuInfo", "cpu_info", "parse_cpuinfo", "saturation_risk", "saturation_warning",
           "INT8_FLAGS"]

# Flags that decide which integer kernels onnxruntime's MLAS picks, in Linux's spelling.
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx_vnni_int8",
              "amx_tile", "amx_int8")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name, architecture and INT8-relevant flags."""

    model: str | None
    machine: str                 # platform.machine(), lower case
    flags: frozenset[str]        # every flag found (Linux spelling), empty when unknown
    source: str                  # where the flags came from: /proc/cpuinfo, sysctl, or "unknown"

    @property
    def x86(self) -> bool:
        return self.machine in X86

    @property
    def known(self) -> bool:
        return bool(self.flags)

    @property
    def vnni(self) -> bool:
        return any(flag in self.flags for flag in VNNI_FLAGS)

    @property
    def int8_flags(self) -> dict[str, bool]:
        return {flag: flag in self.flags for flag in INT8_FLAGS}

    @property
    def int16_saturation(self) -> bool | None:
        """True when onnxruntime's u8s8 kernels add product pairs in saturating int16 here.

        None when it cannot be told (an x86 CPU whose flags could not be read).
        """
        if not self.x86:
            return False
        if not self.known:
            return None
        return not self.vnni

    def kernel(self) -> str:
        """The u8s8 kernel family onnxruntime picks here, in words."""
        if not self.x86:
            return f"{self.machine}: no x86 int16 pair saturation"
        if not self.known:
            return "x86, flags unknown"
        if "amx_int8" in self.flags:
            return "AMX / AVX-512 VNNI (int32 accumulation)"
        if "avx512_vnni" in self.flags:
            return "AVX-512 VNNI (int32 accumulation)"
        if "avx_vnni" in self.flags:
            return "AVX-VNNI (int32 accumulation)"
        if "avx512bw" in self.flags:
            return "AVX-512 without VNNI (int16 pair sums, saturating)"
        if "avx2" in self.flags:
            return "AVX2 without VNNI (int16 pair sums, saturating)"
        return "SSE (int16 pair sums, saturating)"

    def to_dict(self) -> dict:
        return {"model": self.model, "machine": self.machine, "source": self.source,
                "flags": self.int8_flags, "int8_kernel": self.kernel(),
                "int16_saturation": self.int16_saturation}


def parse_cpuinfo(text: str) -> tuple[str | None, frozenset[str]]:
    """Model name and flags of the first processor in a ``/proc/cpuinfo`` text."""
    model, flags = None, frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_info(cpuinfo: str | None = None, machine: str | None = None) -> CpuInfo:
    """The CPU this process runs on, or the one a given ``/proc/cpuinfo`` text describes.

    Parameters
    ----------
    cpuinfo : str, optional
        Text in ``/proc/cpuinfo`` format (tests, other machines). Default: read
        ``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS.
    machine : str, optional
        Architecture (default ``platform.machine()``).
    """
    machine = (machine or platform.machine() or "unknown").lower()
    if cpuinfo is not None:
        model, flags = parse_cpuinfo(cpuinfo)
        return CpuInfo(model, machine, flags, "given")
    path = Path("/proc/cpuinfo")
    if path.is_file():
        try:
            model, flags = parse_cpuinfo(path.read_text(errors="replace"))
            return CpuInfo(model, machine, flags, str(path))
        except OSError:
            pass
    if platform.system() == "Darwin":
        features = " ".join(_sysctl(n) for n in ("machdep.cpu.features", "machdep.cpu.leaf7_features"))
        # macOS spells them AVX2, AVX512F, AVX512VNNI...; map to Linux's names.
        names = {f.lower().replace("avx512vnni", "avx512_vnni").replace(".", "_")
                 for f in features.split()}
        return CpuInfo(_sysctl("machdep.cpu.brand_string") or None, machine, frozenset(names), "sysctl")
    return CpuInfo(platform.processor() or None, machine, frozenset(), "unknown")


def saturation_risk(card: dict, cpu: CpuInfo) -> bool:
    """True when ``card`` is an INT8 model not declared saturation-safe and ``cpu`` lacks VNNI."""
    if str(card.get("precision", "")).lower() != "int8":
        return False
    if (card.get("quantization") or {}).get("saturation_safe") is True:
        return False
    return cpu.int16_saturation is True


def saturation_warning(card: dict, cpu: CpuInfo, model: str = "the INT8 model") -> str | None:
    """The one-line warning for :func:`saturation_risk`, or None."""
    if not saturation_risk(card, cpu):
        return None
    return (f"{model} is not declared saturation-safe and this CPU has no VNNI "
            f"({cpu.kernel()}): its int8 sums can saturate and scores can differ from FP32 "
            "and from VNNI CPUs; use --model fp32 (or a model built by python -m convert quantize)")
