"""The wheel: built, installed into fresh virtual environments, used from outside the repository.

- a plain environment (no TensorFlow, no codecs extra) scores an example;
- an OpenVINO environment (onnxruntime-openvino replaces onnxruntime, as the
  README tells users to do it) gives the CPU EP's scores within 0.05.

Virtual environments live under $DELTAIQA_TEST_VENV_DIR (default
<repo>/build/test-venvs); .ci/run clears it so each CI run makes them once.
Both tests need PyPI (or a local wheel index) reachable by pip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from model_builders import make_tiny_model
from dicom_builders import ct_dataset, phantom_hu, save

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
VENV_ROOT = Path(os.environ.get("DELTAIQA_TEST_VENV_DIR", REPO / "build" / "test-venvs"))
SHIPPED = [REPO / "models" / "deltaiqa-int8.onnx", REPO / "models" / "deltaiqa-fp32.onnx"]

pytestmark = pytest.mark.slow


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)


def _checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _bin(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if os.name == "nt" else "bin") / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the 'build' package (test extra) is needed to build the wheel")
    out = tmp_path_factory.mktemp("dist")
    # No isolation: hatchling comes from the test extra, so this works offline too.
    _checked([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)])
    (path,) = out.glob("deltaiqa_lite-*.whl")
    return path


def _outside_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DELTAIQA_LITE_MODEL_DIR", "VIRTUAL_ENV")}
    return env


def test_wheel_contents_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "deltaiqa_lite/cli.py" in names and "deltaiqa_lite/read/dicom.py" in names
    # The dashboard's templates and assets travel in the wheel (served locally, no CDN).
    assert {"deltaiqa_lite/dashboard/templates/base.html", "deltaiqa_lite/dashboard/static/dashboard.css",
            "deltaiqa_lite/dashboard/static/favicon.svg"} <= names
    assert not any(n.startswith(("convert/", "tests/")) for n in names)
    for model in SHIPPED:
        if model.is_file():
            assert f"deltaiqa_lite/models/{model.name}" in names
    requires = sorted(line.split(" ", 1)[1].split(";")[0].split(">")[0].split("=")[0].strip()
                      for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert requires == ["numpy", "onnxruntime", "pillow", "pydicom"]
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    assert entry_points


def test_wheel_in_fresh_venv_scores_from_outside(wheel, tmp_path):
    venv = tmp_path / "venv"
    _checked([sys.executable, "-m", "venv", str(venv)])
    _checked([_bin(venv, "python"), "-m", "pip", "install", "--quiet", str(wheel)], env=_outside_env())
    python = _bin(venv, "python")
    probe = _checked([python, "-c", "import importlib.util as u; "
                      "print([m for m in ('tensorflow', 'keras', 'cv2', 'scipy', 'pylibjpeg') if u.find_spec(m)])"],
                     cwd=tmp_path, env=_outside_env())
    assert probe.stdout.strip() == "[]"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    example = shutil.copy(EXAMPLES / "dose-025.dcm", outside / "slice.dcm")
    command = [_bin(venv, "deltaiqa-lite"), "score", str(example), "--json"]
    if not all(m.is_file() for m in SHIPPED):
        # Until the models ship, check install and CLI with a test model; the wheel's own models are
        # exercised as soon as models/ holds them.
        command += ["--model", str(make_tiny_model(tmp_path / "tiny.onnx"))]
    done = _run(command, cwd=outside, env=_outside_env())
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (result,) = document["slices"]
    assert result["status"] == "ok" and 0 <= result["score"] <= 4
    if all(m.is_file() for m in SHIPPED):
        assert "site-packages" in document["model_path"] and document["precision"] == "int8"

    info = _run([_bin(venv, "deltaiqa-lite"), "info", "--json"], cwd=outside, env=_outside_env())
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["codecs"]["packages"]["pylibjpeg"] is None

    # Without the codecs extra, JPEG Lossless must fail with one line naming the syntax and the extra.
    if shutil.which("dcmcjpeg"):
        plain = save(ct_dataset(phantom_hu()), tmp_path / "plain.dcm")
        compressed = outside / "jpeg-lossless.dcm"
        _checked(["dcmcjpeg", "+e1", str(plain), str(compressed)])
        done = _run(command[:2] + [str(compressed)] + command[3:], cwd=outside, env=_outside_env())
        assert done.returncode == 1
        message = json.loads(done.stdout)["slices"][0]["error"]
        assert message == (f"{compressed}: (0002,0010) Transfer Syntax UID is 'JPEG Lossless, Non-Hierarchical, "
                           "First-Order Prediction (Process 14 [Selection Value 1])'; decoding it needs the "
                           "codecs extra: pip install 'deltaiqa-lite[codecs]'")


def _openvino_venv(wheel: Path) -> Path:
    """A cached venv with the OpenVINO build of onnxruntime, made with the README's recipe."""
    venv = VENV_ROOT / "openvino"
    marker = venv / ".ready"
    if marker.is_file():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    _checked([sys.executable, "-m", "venv", str(venv)])
    pip = [_bin(venv, "python"), "-m", "pip"]
    env = _outside_env()
    # README recipe: the extra pulls both builds (onnxruntime is a base dependency); both install the
    # module `onnxruntime`, so remove both and put the OpenVINO build back alone.
    _checked(pip + ["install", "--quiet", f"{wheel}[openvino]"], env=env)
    _checked(pip + ["uninstall", "-y", "--quiet", "onnxruntime", "onnxruntime-openvino"], env=env)
    _checked(pip + ["install", "--quiet", "--no-deps", "onnxruntime-openvino"], env=env)
    marker.write_text("ok\n")
    return venv


def test_openvino_matches_cpu(wheel, tmp_path, tiny_model):
    venv = _openvino_venv(wheel)
    python = _bin(venv, "python")
    _checked([python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)],
             env=_outside_env())
    providers = _checked([python, "-c", "import onnxruntime as o; print(o.get_available_providers())"],
                         cwd=tmp_path, env=_outside_env())
    assert "OpenVINOExecutionProvider" in providers.stdout

    shipped = all(m.is_file() for m in SHIPPED)
    models = [str(m) for m in SHIPPED] if shipped else [str(tiny_model)]
    examples = [str(p) for p in sorted(EXAMPLES.glob("*.dcm"))]
    script = ("import json, sys\nfrom deltaiqa_lite import Scorer\nout = {}\n"
              "for model in json.loads(sys.argv[1]):\n"
              "    s = Scorer(model, provider=sys.argv[3], strict_provider=True)\n"
              "    out[model] = {'providers': s.providers, 'scores': [r.score for r in s.score_paths(json.loads(sys.argv[2]))]}\n"
              "print(json.dumps(out))\n")
    openvino = _checked([python, "-c", script, json.dumps(models), json.dumps(examples), "openvino"],
                        cwd=tmp_path, env=_outside_env())
    cpu = _checked([sys.executable, "-c", script, json.dumps(models), json.dumps(examples), "cpu"],
                   cwd=tmp_path, env=_outside_env())
    openvino_out, cpu_out = json.loads(openvino.stdout), json.loads(cpu.stdout)
    for model in models:
        assert openvino_out[model]["providers"][0] == "OpenVINOExecutionProvider"
        assert cpu_out[model]["providers"] == ["CPUExecutionProvider"]
        for name, a, b in zip(examples, openvino_out[model]["scores"], cpu_out[model]["scores"]):
            assert a is not None and b is not None
            assert abs(a - b) <= 0.05, f"{model} on {name}: openvino {a:.4f} cpu {b:.4f}"
