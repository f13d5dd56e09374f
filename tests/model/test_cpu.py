"""CPU integer capability and the INT8 saturation warning, with /proc/cpuinfo texts of real CPU kinds."""

from __future__ import annotations

import json
import warnings

import pytest

from deltaiqa_lite.model import cpu
from deltaiqa_lite.cli import main
from model_builders import CARD, make_tiny_model

# Flags lines trimmed from real /proc/cpuinfo files (other flags left out).
AVX2_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2

processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2
"""
SKYLAKE_X = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: sse4_2 avx avx2 avx512f avx512bw avx512vl\n"
ZEN4 = "model name\t: AMD EPYC 9R14\nflags\t\t: avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 avx512f avx512_vnni avx_vnni amx_tile amx_int8\n"
ALDER = "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\nflags\t\t: avx2 avx_vnni\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"

OLD_INT8_CARD = {**CARD, "precision": "int8",
                 "quantization": {"format": "QDQ, per-channel symmetric INT8 weights"}}
SAFE_INT8_CARD = {**CARD, "precision": "int8",
                  "quantization": {"saturation_safe": True, "weights": "s7"}}


@pytest.mark.parametrize("text, machine, saturates, kernel", [
    (AVX2_EPYC, "x86_64", True, "AVX2 without VNNI"),
    (SKYLAKE_X, "x86_64", True, "AVX-512 without VNNI"),
    (ZEN4, "x86_64", False, "AVX-512 VNNI"),
    (SAPPHIRE, "x86_64", False, "AMX"),
    (ALDER, "x86_64", False, "AVX-VNNI"),
    (GRAVITON, "aarch64", False, "aarch64"),
    ("", "x86_64", None, "flags unknown"),
])
def test_int16_saturation_by_cpu_kind(text, machine, saturates, kernel):
    info = cpu.cpu_info(text, machine=machine)
    assert info.int16_saturation is saturates
    assert kernel in info.kernel()


def test_parse_takes_the_first_processor():
    model, flags = cpu.parse_cpuinfo(AVX2_EPYC)
    assert model == "AMD EPYC 7B12"
    assert "avx2" in flags and "avx512f" not in flags
    assert cpu.cpu_info(AVX2_EPYC, machine="x86_64").int8_flags == {
        "avx2": True, "avx512f": False, "avx512bw": False, "avx512_vnni": False, "avx_vnni": False,
        "avx_vnni_int8": False, "amx_tile": False, "amx_int8": False}


def test_warning_only_for_unsafe_int8_without_vnni():
    avx2 = cpu.cpu_info(AVX2_EPYC, machine="x86_64")
    message = cpu.saturation_warning(OLD_INT8_CARD, avx2, model="deltaiqa-int8.onnx")
    assert message is not None and "\n" not in message
    assert "deltaiqa-int8.onnx" in message and "saturate" in message and "--model fp32" in message
    assert cpu.saturation_warning(SAFE_INT8_CARD, avx2) is None
    assert cpu.saturation_warning(CARD, avx2) is None                       # fp32
    assert cpu.saturation_warning(OLD_INT8_CARD, cpu.cpu_info(ZEN4, machine="x86_64")) is None
    assert cpu.saturation_warning(OLD_INT8_CARD, cpu.cpu_info(GRAVITON, machine="aarch64")) is None


REAL_CPU_INFO = cpu.cpu_info


def _fake_cpu(monkeypatch, text):
    """The real parser fed another CPU's /proc/cpuinfo text."""
    monkeypatch.setattr(cpu, "cpu_info", lambda: REAL_CPU_INFO(text, machine="x86_64"))


def test_scorer_warns_once_for_an_unsafe_int8_model_on_avx2(tmp_path, monkeypatch):
    from deltaiqa_lite import Scorer

    unsafe = make_tiny_model(tmp_path / "unsafe.onnx", card=OLD_INT8_CARD)
    safe = make_tiny_model(tmp_path / "safe.onnx", card=SAFE_INT8_CARD)
    _fake_cpu(monkeypatch, AVX2_EPYC)
    with pytest.warns(RuntimeWarning, match=r"unsafe\.onnx is not declared saturation-safe.*--model fp32") as caught:
        Scorer(unsafe, provider="cpu")
    assert len([w for w in caught if "saturation" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Scorer(safe, provider="cpu")
    _fake_cpu(monkeypatch, ZEN4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Scorer(unsafe, provider="cpu")


def test_cli_prints_the_warning_on_one_line(capsys, tmp_path, monkeypatch):
    unsafe = make_tiny_model(tmp_path / "unsafe.onnx", card=OLD_INT8_CARD)
    image = tmp_path / "slice.npy"
    import numpy as np

    np.save(image, np.zeros((64, 64), np.float32))
    _fake_cpu(monkeypatch, AVX2_EPYC)
    assert main(["score", str(image), "--model", str(unsafe), "--provider", "cpu", "--json"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "saturation" in line]
    assert len(lines) == 1 and lines[0].startswith("deltaiqa-lite: warning: unsafe.onnx")


def test_info_reports_cpu_and_int8_safety(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    make_tiny_model(folder / "deltaiqa-int8.onnx", card=OLD_INT8_CARD)
    monkeypatch.setenv("DELTAIQA_LITE_MODEL_DIR", str(folder))
    _fake_cpu(monkeypatch, AVX2_EPYC)
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpu"]["model"] == "AMD EPYC 7B12"
    assert info["cpu"]["flags"]["avx2"] and not info["cpu"]["flags"]["avx512_vnni"]
    assert info["cpu"]["int16_saturation"] is True
    int8 = next(m for m in info["models"] if m["name"] == "int8")
    assert int8["saturation_safe"] is False and int8["saturation_risk_here"] is True
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "int8 kernel: AVX2 without VNNI (int16 pair sums, saturating)" in out
    assert "int8 saturation-safe: NO: its sums can saturate on this CPU (no VNNI); use --model fp32" in out
