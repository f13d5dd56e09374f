"""onnxruntime sessions: which model file, which execution provider, and a check
that the provider asked for is the one that runs.

onnxruntime falls back to the CPU silently when a provider cannot start, so
after creating a session we compare ``session.get_providers()`` with the
request: a warning, or :class:`ProviderError` with ``strict_provider``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaiqa_lite.errors import ModelError, ProviderError

__all__ = ["PROVIDERS", "MODEL_NAMES", "model_dirs", "resolve_model", "available_providers",
           "provider_chain", "create_session", "SessionInfo", "trt_cache_dir"]

# Short names -> onnxruntime providers, in the order onnxruntime should try them.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# auto: best available without surprises. TensorRT is left to an explicit
# request: its first session builds an engine for minutes, and onnxruntime-gpu
# lists it as available even where the TensorRT libraries are absent.
AUTO_ORDER = ("cuda", "openvino", "cpu")
MODEL_NAMES = {"int8": "deltaiqa-int8.onnx", "fp32": "deltaiqa-fp32.onnx"}
MODEL_DIR_ENV = "DELTAIQA_LITE_MODEL_DIR"


def model_dirs() -> list[Path]:
    """Folders searched for the shipped models, in order.

    ``$DELTAIQA_LITE_MODEL_DIR`` (if set), the installed package's
    ``deltaiqa_lite/models`` (the wheel carries the models there), then the
    repository's ``models/`` for a source checkout.
    """
    dirs = []
    if os.environ.get(MODEL_DIR_ENV):
        dirs.append(Path(os.environ[MODEL_DIR_ENV]))
    package_dir = Path(__file__).resolve().parents[1]   # deltaiqa_lite/
    dirs.append(package_dir / "models")
    dirs.append(package_dir.parent / "models")
    return dirs


def resolve_model(model: str | os.PathLike) -> Path:
    """``"int8"``, ``"fp32"`` or a path -> an existing ONNX file.

    Raises
    ------
    ModelError
        Unknown name or no such file, naming the folders searched.
    """
    key = str(model)
    if key.lower() in MODEL_NAMES:
        file_name = MODEL_NAMES[key.lower()]
        for folder in model_dirs():
            candidate = folder / file_name
            if candidate.is_file():
                return candidate
        searched = ", ".join(str(d) for d in model_dirs())
        raise ModelError(f"{file_name}: shipped model '{key}' not found (searched {searched})")
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (give 'int8', 'fp32' or an .onnx path)")
    return path


def available_providers() -> list[str]:
    """Providers compiled into the installed onnxruntime build."""
    import onnxruntime
    return list(onnxruntime.get_available_providers())


def provider_chain(provider: str, available: list[str] | None = None) -> tuple[str, list[str]]:
    """Resolve a short provider name to (resolved short name, onnxruntime provider list)."""
    name = provider.lower()
    available = available_providers() if available is None else available
    if name == "auto":
        for candidate in AUTO_ORDER:
            if PROVIDERS[candidate][0] in available:
                return candidate, PROVIDERS[candidate]
        return "cpu", PROVIDERS["cpu"]
    if name not in PROVIDERS:
        raise ProviderError(f"unknown provider '{provider}'; choose auto, cpu, openvino, tensorrt or cuda")
    return name, PROVIDERS[name]


def trt_cache_dir() -> Path:
    """User cache folder for TensorRT engines (``$XDG_CACHE_HOME/deltaiqa-lite/trt``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deltaiqa-lite" / "trt"


def _provider_options(name: str, precision: str, batch_size: int, input_size: int,
                      cache: Path | None) -> dict[str, Any]:
    if name == "tensorrt":
        cache = cache or trt_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        shape = f"image:{{}}x{input_size}x{input_size}x1"
        return {
            # QDQ INT8 graphs run as INT8 only with this on; FP32 models use FP16 kernels.
            "trt_int8_enable": precision == "int8",
            "trt_fp16_enable": precision != "int8",
            # Engines take minutes to build; keep them across processes.
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            # One profile for 1..batch_size, so changing N does not rebuild the engine.
            "trt_profile_min_shapes": shape.format(1),
            "trt_profile_opt_shapes": shape.format(batch_size),
            "trt_profile_max_shapes": shape.format(batch_size),
        }
    return {}


@dataclass(frozen=True)
class SessionInfo:
    """What was asked for and what runs."""

    requested: str           # short name given by the caller (may be "auto")
    resolved: str            # short name chosen (auto resolved)
    providers: list[str]     # session.get_providers(): what really runs
    fallback: bool           # the resolved provider is not the first one running


def create_session(model_path: str | os.PathLike, *, provider: str = "auto", threads: int | None = None,
                   precision: str = "fp32", batch_size: int = 8, input_size: int = 512,
                   strict_provider: bool = False, cache_dir: str | os.PathLike | None = None,
                   spinning: bool | None = None):
    """Create an onnxruntime session and check which provider really runs it.

    Parameters
    ----------
    model_path : path
        ONNX file.
    provider : {"auto", "cpu", "openvino", "tensorrt", "cuda"}
    threads : int, optional
        Intra-op threads (None: onnxruntime's default, one per physical core).
    precision : str
        From the model card; selects TensorRT INT8 or FP16.
    batch_size, input_size : int
        Shape profile for TensorRT.
    strict_provider : bool
        Raise instead of warning when the session fell back to another provider.
    cache_dir : path, optional
        TensorRT engine cache (default :func:`trt_cache_dir`).
    spinning : bool, optional
        Whether idle intra-op threads spin (``session.intra_op.allow_spinning``);
        None keeps onnxruntime's default (on). Spinning threads burn the CPU
        time that reader threads on the same cores need.

    Returns
    -------
    (onnxruntime.InferenceSession, SessionInfo)

    Raises
    ------
    ModelError
        onnxruntime cannot load the file.
    ProviderError
        Unknown provider, or a fallback with ``strict_provider``.
    """
    import onnxruntime

    available = available_providers()
    resolved, chain = provider_chain(provider, available)
    wanted = chain[0]
    if wanted not in available:
        message = (f"provider '{resolved}' ({wanted}) is not in this onnxruntime build "
                   f"(available: {', '.join(available)}); {_install_hint(resolved)}")
        if strict_provider:
            raise ProviderError(message)
        warnings.warn(message + "; running on CPU", RuntimeWarning, stacklevel=2)
        chain = [p for p in chain if p in available] or ["CPUExecutionProvider"]
    options = onnxruntime.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ProviderError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # Let onnxruntime's own log stay quiet (warnings and up): fallbacks are reported by us.
    options.log_severity_level = 3
    cache = Path(cache_dir) if cache_dir is not None else None
    providers = [(p, _provider_options(_short(p), precision, batch_size, input_size, cache))
                 if _short(p) == "tensorrt" else p for p in chain]
    try:
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"{model_path}: onnxruntime cannot load it: {str(error).splitlines()[0]}") from error
    running = list(session.get_providers())
    fallback = running[0] != wanted
    if fallback and wanted in available:
        message = (f"provider '{resolved}' ({wanted}) was requested but the session runs on "
                   f"{running[0]}; check the drivers and libraries of {wanted}")
        if strict_provider:
            raise ProviderError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return session, SessionInfo(requested=provider, resolved=resolved, providers=running, fallback=fallback)


def _short(onnxruntime_name: str) -> str:
    for short, chain in PROVIDERS.items():
        if chain[0] == onnxruntime_name:
            return short
    return onnxruntime_name


def _install_hint(name: str) -> str:
    if name == "openvino":
        return ("install the OpenVINO build: pip uninstall onnxruntime && "
                "pip install 'deltaiqa-lite[openvino]'")
    if name in ("cuda", "tensorrt"):
        return ("install the GPU build: pip uninstall onnxruntime && pip install 'deltaiqa-lite[gpu]'"
                + (" plus TensorRT" if name == "tensorrt" else ""))
    return "reinstall onnxruntime"
