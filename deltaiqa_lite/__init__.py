"""deltaiqa-lite: CT slice image quality on the LDCTIQAC 0-4 Likert scale, with onnxruntime.

Research and QA use on CT images; not a diagnostic device.

    from deltaiqa_lite import Scorer
    scorer = Scorer("int8")
    result = scorer.score_file("slice.dcm")
    print(result.score, result.label)

Names are imported lazily so that ``import deltaiqa_lite`` (and the CLI's cold
start) does not pay for onnxruntime or pydicom until they are used.

The packages, lowest layer first (a module imports only from layers below its
own; ``tests/test_layers.py`` keeps it so):

- ``errors``                      exception types
- ``read``, ``model``, ``physics`` files in; the model contract; noise, size, dose
- ``explain``                     Grad-CAM and drawing
- ``score``                       :class:`Scorer` and its result records: the facade
- ``validate``, ``output``        labels, metrics, evaluate, compare; writers and DICOM SR
- ``engine``                      streaming runs (local, Ray) and ``bench``
- ``qa``                          the QA node: log, ingest, serve, watch, outbox, reports
- ``commands``, ``cli``           the command line

Module paths from before this layout (``deltaiqa_lite.preprocess``,
``deltaiqa_lite.write`` ...) still import, as aliases of their new homes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaiqa_lite._version import __version__

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
    "Preprocessing": "deltaiqa_lite.model.preprocess",
    "read_slices": "deltaiqa_lite.read",
}

if TYPE_CHECKING:  # pragma: no cover
    from deltaiqa_lite.errors import (DeltaIQAError, InputError, MissingCodecError, ModelError,
                                      ProviderError, RefusedInput)
    from deltaiqa_lite.model.preprocess import Preprocessing
    from deltaiqa_lite.read import read_slices
    from deltaiqa_lite.score import Scorer, SeriesResult, SliceResult


#: Old module path -> its home in the layered tree (kept importable for users' code).
MOVED_MODULES = {
    "deltaiqa_lite.card": "deltaiqa_lite.model.card",
    "deltaiqa_lite.preprocess": "deltaiqa_lite.model.preprocess",
    "deltaiqa_lite.session": "deltaiqa_lite.model.session",
    "deltaiqa_lite.cpu": "deltaiqa_lite.model.cpu",
    "deltaiqa_lite.onnx_weights": "deltaiqa_lite.model.onnx_weights",
    "deltaiqa_lite.label_rule": "deltaiqa_lite.physics.label_rule",
    "deltaiqa_lite.draw": "deltaiqa_lite.explain.draw",
    "deltaiqa_lite.labels": "deltaiqa_lite.validate.labels",
    "deltaiqa_lite.metrics": "deltaiqa_lite.validate.metrics",
    "deltaiqa_lite.evaluate": "deltaiqa_lite.validate.evaluate",
    "deltaiqa_lite.compare": "deltaiqa_lite.validate.compare",
    "deltaiqa_lite.write": "deltaiqa_lite.output.write",
    "deltaiqa_lite.sr": "deltaiqa_lite.output.sr",
    "deltaiqa_lite.bench": "deltaiqa_lite.engine.bench",
    "deltaiqa_lite.qa.options": "deltaiqa_lite.commands._node",
}


class _MovedModuleFinder:
    """Import hook: an old module path gives the module object of its new home (one module, two names)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        from importlib.util import spec_from_loader
        return spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        import importlib
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: Any) -> None:
        """The new module already ran; nothing more to execute."""


def _install_moved_module_finder() -> None:
    import sys
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


_install_moved_module_finder()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deltaiqa_lite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
