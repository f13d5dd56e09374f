"""INT8 saturation on x86 CPUs without VNNI: the proof by construction and the exact emulation.

The emulation is checked against onnxruntime on this CPU (exactly: with
saturation where the CPU has no VNNI, without where it has) and, where
``qemu-x86_64`` is installed, against onnxruntime on an emulated Haswell
(AVX2, no VNNI), whose u8s8 kernels really saturate.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.quant.saturation import emulate, integer_matmul, is_saturation_safe, saturation_report
from deltaiqa_lite.model.cpu import cpu_info
from model_builders import file_from_git, make_qdq_model

REPO = Path(__file__).resolve().parents[3]
INT8 = REPO / "models" / "deltaiqa-int8.onnx"
# The INT8 model shipped before issue 9: full-range int8 weights.
OLD_INT8_COMMIT = "e5289d4"
QEMU = shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qdq")
    x = np.random.default_rng(1).random((1, 1, 24, 24)).astype(np.float32)
    return {"full": make_qdq_model(folder / "full.onnx", weight_limit=127),
            "seven": make_qdq_model(folder / "seven.onnx", weight_limit=64),
            "float_ends": make_qdq_model(folder / "float-ends.onnx", weight_limit=127, float_ends=True),
            "x": x}


def _onnxruntime(model, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["logits"], {"x": x})[0]


def test_pair_saturation_is_int16():
    activations = np.array([[255, 255, 255, 255, 1, 2]], np.uint8)
    weights = np.array([[127], [127], [-127], [-127], [100], [-100]], np.int8)
    assert integer_matmul(activations, weights, saturate=False)[0, 0] == -100
    # (255*127)*2 = 64770 -> 32767 and -64770 -> -32768; the last pair is exact.
    assert integer_matmul(activations, weights, saturate=True)[0, 0] == 32767 - 32768 - 100


def test_proof_fails_for_full_range_weights_and_holds_for_7_bit(tiny):
    full = saturation_report(tiny["full"])
    assert [layer.op for layer in full] == ["Conv", "Conv", "Gemm"]
    assert not any(layer.safe for layer in full) and not is_saturation_safe(tiny["full"])
    assert all(layer.worst_pair_sum > 32767 for layer in full)
    seven = saturation_report(tiny["seven"])
    assert all(layer.safe and layer.max_abs_weight <= 64 and layer.worst_pair_sum <= 32767 for layer in seven)
    assert is_saturation_safe(tiny["seven"])


def test_emulation_matches_onnxruntime_here_exactly(tiny):
    saturates = cpu_info().int16_saturation
    if saturates is None:
        pytest.skip("this CPU's flags are unknown, so its kernel cannot be told")
    for model in (tiny["full"], tiny["seven"]):
        expected = _onnxruntime(model, tiny["x"])
        assert np.array_equal(emulate(model, tiny["x"], saturate=bool(saturates), outputs=("logits",)), expected)


def test_layers_left_in_float_are_emulated_and_not_counted(tiny):
    """conv1 and the head in float (as our INT8 models keep them): emulated in float32 around
    the integer conv; only the integer conv enters the proof."""
    report = saturation_report(tiny["float_ends"])
    assert [layer.op for layer in report] == ["Conv"] and not report[0].safe
    saturates = cpu_info().int16_saturation
    if saturates is None:
        pytest.skip("this CPU's flags are unknown, so its kernel cannot be told")
    expected = _onnxruntime(tiny["float_ends"], tiny["x"])
    emulated = emulate(tiny["float_ends"], tiny["x"], saturate=bool(saturates), outputs=("logits",))
    # Float layers: float32 sums in another order than MLAS, so equal to rounding, not bit for bit.
    np.testing.assert_allclose(emulated, expected, rtol=1e-5, atol=1e-5)


def test_saturation_changes_full_range_weights_only(tiny):
    full = [emulate(tiny["full"], tiny["x"], saturate=s, outputs=("logits",)) for s in (False, True)]
    assert np.abs(full[0] - full[1]).max() > 0.2
    seven = [emulate(tiny["seven"], tiny["x"], saturate=s, outputs=("logits",)) for s in (False, True)]
    assert np.array_equal(seven[0], seven[1])


@pytest.mark.skipif(not INT8.exists(), reason="needs the shipped models/deltaiqa-int8.onnx")
def test_shipped_int8_is_saturation_safe_by_construction():
    import onnx

    from convert.card.card import read_card

    report = saturation_report(INT8)
    quantization = read_card(onnx.load(str(INT8)))["quantization"]
    # The integer layers: the five convolutions, less conv1 where the card says it stays in float;
    # the classifier head (dense1..dense3) is float in every variant.
    expected = [f"conv{k}_1/BiasAdd" for k in range(1, 6)]
    if "conv1" in quantization["float_layers"]:
        expected = expected[1:]
    assert [layer.node for layer in report] == expected
    assert all(layer.safe and layer.max_abs_weight <= 64 for layer in report), report
    assert quantization["saturation_safe"] is True
    assert quantization["saturation"]["held_out_gate_without_vnni"]["passed"] is True


def test_int8_shipped_before_issue_9_fails_the_proof(tmp_path):
    old = file_from_git(OLD_INT8_COMMIT, "models/deltaiqa-int8.onnx", tmp_path / "old-int8.onnx")
    report = saturation_report(old)
    assert len(report) == 8 and not any(layer.safe for layer in report)
    assert max(layer.max_abs_weight for layer in report) == 127


QEMU_PROBE = """
import json, sys
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
x = np.random.default_rng(1).random((1, 1, 24, 24)).astype(np.float32)
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
print(json.dumps(session.run(["logits"], {"x": x})[0].tolist()))
"""


def run_on_haswell(*args: str, timeout: float = 600) -> str:
    """stdout of ``python args`` under ``qemu-x86_64 -cpu Haswell`` (AVX2, FMA, no AVX-512, no VNNI)."""
    done = subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    errors = [line for line in done.stderr.splitlines() if "TCG doesn't support" not in line]
    assert done.returncode == 0, "\n".join(errors[-20:])
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None or platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="needs qemu-x86_64 (Debian qemu-user) on an x86_64 host")
def test_emulation_matches_onnxruntime_on_an_emulated_haswell(tiny):
    haswell = {name: np.array(json.loads(run_on_haswell("-c", QEMU_PROBE, str(tiny[name]))), np.float32)
               for name in ("full", "seven")}
    for name, result in haswell.items():
        assert np.array_equal(result, emulate(tiny[name], tiny["x"], saturate=True, outputs=("logits",))), name
    # The probe really ran saturating kernels: full-range weights differ from the VNNI arithmetic.
    assert not np.array_equal(haswell["full"], emulate(tiny["full"], tiny["x"], saturate=False,
                                                       outputs=("logits",)))
