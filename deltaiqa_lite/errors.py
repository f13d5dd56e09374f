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
    "RefusedInput",
    "MissingCodecError",
    "ModelError",
    "ProviderError",
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
