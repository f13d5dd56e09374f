"""Exception types raised by deltaiqa-lite.

Library code raises these and never calls ``sys.exit``; the CLI turns each
into one line on stderr and an exit status. Messages follow pydicom's habit:
name the file, the element or value, and what was expected, e.g.
``CT_small.dcm: (0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only``.
"""

from __future__ import annotations

__all__ = [
    "DeltaIQAError",
    "InputError",
    "InputWarning",
    "RefusedInput",
    "MissingCodecError",
    "ModelError",
    "ProviderError",
    "WarningTally",
]


class DeltaIQAError(Exception):
    """Base class of every error deltaiqa-lite raises on purpose."""


class InputError(DeltaIQAError):
    """An input file cannot be scored (unreadable, refused, or malformed).

    Parameters
    ----------
    path : str
        The file (or folder) the message is about; it leads the message.
    reason : str
        What is wrong, naming the DICOM element where there is one.
    """

    #: DICOM identity of the refused object, when its header could be read,
    #: so that a refused slice is still reported under its series.
    series_uid: str | None = None
    sop_instance_uid: str | None = None

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Pickle with both arguments and the DICOM identity, so the error
        # survives the trip between processes (Ray read tasks and actors).
        return type(self), (self.path, self.reason), dict(self.__dict__)


class RefusedInput(InputError):
    """A readable input that deltaiqa-lite is not made for (MR, scout, SR, RGB, ...)."""


class MissingCodecError(InputError):
    """Compressed pixel data whose decoder is not installed (the ``codecs`` extra)."""


class ModelError(DeltaIQAError):
    """A model file is missing, unreadable, or breaks the model contract."""


class ProviderError(DeltaIQAError):
    """The requested execution provider is not what runs the session (``strict_provider``)."""


class CategoryMapError(DeltaIQAError):
    """A CT category mapping file (``report --exams --categories``) that cannot be used."""


class InputWarning(UserWarning):
    """A value of an input that was ignored because it is malformed but not needed to score.

    The message names the file, the element and its value, like an InputError.
    """


class WarningTally:
    """Collect the warnings of a run instead of letting them print raw.

    pydicom warns once per malformed element through :mod:`warnings`; on a
    batch of hostile files that is dozens of multi-line messages on stderr. Inside
    ``with WarningTally(stream) as tally`` each distinct warning site (category,
    module, line) is shown once, in one line naming the first message, and
    :meth:`summary` says how many times each site fired.

    Not re-entrant across threads in the sense of separate tallies: it replaces
    the process-wide ``warnings.showwarning`` for its duration (the CLI owns the
    process), and counts warnings from every thread.
    """

    def __init__(self, stream=None, *, prefix: str = "deltaiqa-lite") -> None:
        import threading

        self.stream = stream
        self.prefix = prefix
        self.counts: dict[tuple[str, str, int], int] = {}
        self.first: dict[tuple[str, str, int], str] = {}
        self._lock = threading.Lock()
        self._saved = None

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        import sys

        key = (category.__name__, str(filename), int(lineno))
        text = " ".join(str(message).split())
        if len(text) > 300:
            text = text[:297] + "..."
        with self._lock:
            seen = key in self.counts
            self.counts[key] = self.counts.get(key, 0) + 1
            if not seen:
                self.first[key] = text
        if not seen:
            print(f"{self.prefix}: warning: {text}", file=self.stream or sys.stderr, flush=True)

    def __enter__(self) -> WarningTally:
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        # "always": count every occurrence (the default filter would hide repeats).
        warnings.simplefilter("always")
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc: object) -> None:
        self._catcher.__exit__(*exc)

    @property
    def total(self) -> int:
        """Warnings seen so far."""
        with self._lock:
            return sum(self.counts.values())

    def summary(self) -> str | None:
        """One line: how many warnings, from how many sites, or None when there were none."""
        with self._lock:
            total, sites = sum(self.counts.values()), len(self.counts)
            repeated = sum(n - 1 for n in self.counts.values())
        if not total:
            return None
        return (f"{self.prefix}: {total} warning(s) from {sites} place(s); "
                f"{repeated} repeat(s) not shown")
