"""deltaiqa-lite: CT slice image quality on the LDCTIQAC 0-4 Likert scale, with onnxruntime.

Research and QA use on CT images; not a diagnostic device.

    from deltaiqa_lite import Scorer
    scorer = Scorer("int8")
    result = scorer.score_file("slice.dcm")
    print(result.score, result.label)

Names are imported lazily so that ``import deltaiqa_lite`` (and the CLI's cold
start) does not pay for onnxruntime or pydicom until they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Scorer", "SliceResult", "SeriesResult", "DeltaIQAError", "InputError", "RefusedInput",
           "MissingCodecError", "ModelError", "ProviderError", "Preprocessing", "read_slices",
           "__version__"]

_LAZY = {
    "Scorer": "deltaiqa_lite.score",
    "SliceResult": "deltaiqa_lite.score",
    "SeriesResult": "deltaiqa_lite.score",
    "DeltaIQAError": "deltaiqa_lite.errors",
    "InputError": "deltaiqa_lite.errors",
    "RefusedInput": "deltaiqa_lite.errors",
    "MissingCodecError": "deltaiqa_lite.errors",
    "ModelError": "deltaiqa_lite.errors",
    "ProviderError": "deltaiqa_lite.errors",
    "Preprocessing": "deltaiqa_lite.preprocess",
    "read_slices": "deltaiqa_lite.read",
}

if TYPE_CHECKING:  # pragma: no cover
    from deltaiqa_lite.errors import (DeltaIQAError, InputError, MissingCodecError, ModelError,
                                      ProviderError, RefusedInput)
    from deltaiqa_lite.preprocess import Preprocessing
    from deltaiqa_lite.read import read_slices
    from deltaiqa_lite.score import Scorer, SeriesResult, SliceResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deltaiqa_lite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
