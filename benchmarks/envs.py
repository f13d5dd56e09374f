"""Virtual environments: the runtime-only one (built from the wheel), the OpenVINO one, and their sizes.

Sizes are apparent sizes (sum of ``lstat`` sizes of regular files), the same
measure for every environment; ``du -sk`` figures (disk blocks) are recorded
beside them.

The TensorFlow baseline's environment is measured inside the build
environment as the dependency closure of ``tensorflow`` (plus ``pydicom``,
which its cold-start script uses to read the slice), added to the size of an
empty virtual environment: what a user installing only TensorFlow + Keras
would carry, without the rest of our build tools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "build_wheel",
    "closure_size_script",
    "du_mb",
    "openvino_venv",
    "runtime_venv",
    "tree_size_mb",
    "venv_bin",
]

REPO = Path(__file__).resolve().parents[1]


def tree_size_mb(root: str | os.PathLike) -> float:
    """Apparent size of every regular file under ``root`` (links not followed), in MB (1e6 bytes)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                status = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += status.st_size
    return total / 1e6


def du_mb(root: str | os.PathLike) -> float | None:
    """``du -sk`` of ``root`` in MB, or None where ``du`` is missing."""
    if not shutil.which("du"):
        return None
    done = subprocess.run(["du", "-sk", str(root)], capture_output=True, text=True, check=False)
    return int(done.stdout.split()[0]) * 1024 / 1e6 if done.returncode == 0 else None


def venv_bin(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if os.name == "nt" else "bin") / name)


def _checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def build_wheel(out: Path) -> Path:
    """Build the deltaiqa-lite wheel from the working tree (no isolation: hatchling is a test extra)."""
    _checked([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)])
    (wheel,) = sorted(out.glob("deltaiqa_lite-*.whl"))
    return wheel


def runtime_venv(folder: Path, wheel: Path, env: dict) -> dict:
    """A fresh venv with the wheel and its four dependencies only; returns sizes and timings."""
    start = time.perf_counter()
    empty = folder / "empty"
    _checked([sys.executable, "-m", "venv", str(empty)])
    venv = folder / "runtime"
    _checked([sys.executable, "-m", "venv", str(venv)])
    _checked([venv_bin(venv, "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              str(wheel)], env=env)
    frozen = _checked([venv_bin(venv, "python"), "-m", "pip", "list", "--format", "json",
                       "--disable-pip-version-check"], env=env)
    return {
        "venv": str(venv),
        "wheel": wheel.name,
        "wheel_mb": wheel.stat().st_size / 1e6,
        "install_s": time.perf_counter() - start,
        "size_mb": tree_size_mb(venv),
        "du_mb": du_mb(venv),
        "empty_venv_mb": tree_size_mb(empty),
        "packages": {p["name"]: p["version"] for p in json.loads(frozen.stdout)},
    }


def openvino_venv(env: dict, create: bool) -> Path | None:
    """A venv whose onnxruntime is the OpenVINO build.

    Reuses the one the packaging test makes (``build/test-venvs/openvino``,
    the README recipe) when it is ready, else ``build/bench-venvs/openvino``;
    creates the latter (PyPI needed) only when ``create`` is true.
    """
    candidates = [Path(os.environ.get("DELTAIQA_TEST_VENV_DIR", REPO / "build" / "test-venvs")) / "openvino",
                  REPO / "build" / "bench-venvs" / "openvino"]
    for venv in candidates:
        if (venv / ".ready").is_file():
            return venv
    if not create:
        return None
    venv = candidates[1]
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _checked([sys.executable, "-m", "venv", str(venv)])
    # numpy, pydicom and pillow so the repository's deltaiqa_lite imports; onnxruntime only as the OpenVINO build.
    _checked([venv_bin(venv, "python"), "-m", "pip", "install", "--quiet", "onnxruntime-openvino", "numpy",
              "pydicom", "pillow"], env=env)
    (venv / ".ready").write_text("ok\n")
    return venv


# Run with the build environment's interpreter; prints {"closure": [...], "size_mb": ..., "packages": n}.
closure_size_script = r'''
import json, os, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

dists = {}
for dist in metadata.distributions():
    dists.setdefault(norm(dist.metadata["Name"]), dist)

def requirements(dist):
    for text in dist.requires or []:
        if Requirement is not None:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            yield norm(req.name)
        elif "extra ==" not in text:
            yield norm(re.split(r"[ ;<>=!~\[(]", text, 1)[0])

roots = [norm(n) for n in sys.argv[1:]]
seen, todo = set(), list(roots)
while todo:
    name = todo.pop()
    if name in seen or name not in dists:
        continue
    seen.add(name)
    todo.extend(requirements(dists[name]))

total = 0
for name in seen:
    for file in dists[name].files or []:
        path = dists[name].locate_file(file)
        try:
            if not os.path.islink(path):
                total += os.lstat(path).st_size
        except OSError:
            pass
print(json.dumps({"roots": roots, "closure": sorted(seen), "size_mb": total / 1e6,
                  "missing_roots": [r for r in roots if r not in dists]}))
'''
