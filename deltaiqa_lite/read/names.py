"""File names that are not valid UTF-8: kept lossless in memory, shown escaped.

On POSIX a file name is any byte string without '/' and NUL. Python hands the
undecodable bytes over as lone surrogates (``os.fsdecode``, PEP 383); such a
string cannot be encoded as UTF-8, so SQLite, CSV, Parquet and a UTF-8 terminal
refuse it. Everywhere a name leaves the process it goes through
:func:`display_text`: a valid name is unchanged, an undecodable byte becomes
``\\xNN``. :func:`path_from_display` turns the display form back into the
original name, so the display form identifies the file (except for the
contrived case of a valid name that contains the four characters ``\\xNN`` and
a second name whose raw byte is ``NN``).
"""

from __future__ import annotations

import os
import re

__all__ = ["display_text", "path_from_display", "has_undecodable"]

_ESCAPE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def has_undecodable(text: str) -> bool:
    """Whether ``text`` holds undecodable bytes of a file name (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def display_text(text: str) -> str:
    """``text`` with every undecodable byte written ``\\xNN``; valid text unchanged.

    Parameters
    ----------
    text : str
        A path, a file name, or a message holding one.

    Returns
    -------
    str
        Encodable as UTF-8 in every case.
    """
    if not has_undecodable(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace") if _is_fs_text(text) \
        else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_fs_text(text: str) -> bool:
    # Surrogates from os.fsdecode are U+DC80..U+DCFF; anything else (a broken string
    # from elsewhere) is escaped as the code point, never dropped.
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def path_from_display(shown: str) -> str:
    """The file name a :func:`display_text` form stands for (``\\xNN`` back to the byte)."""
    if not _ESCAPE.search(shown):
        return shown
    raw = _ESCAPE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), shown)
    return os.fsdecode(os.fsencode(raw))
