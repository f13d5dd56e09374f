"""Model cards: the JSON that travels in an ONNX file's ``metadata_props``.

The card says how the model wants its input (window, size, resize rule), its
class labels and precision; the runtime takes preprocessing from it, never
from constants. It is read straight from the ONNX protobuf with a few lines
of wire-format parsing, so ``deltaiqa-lite info`` needs neither the ``onnx``
package nor an inference session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

from deltaiqa_lite.errors import ModelError

__all__ = ["read_card", "read_metadata", "validate_card", "CARD_KEY", "REQUIRED_KEYS"]

CARD_KEY = "model_card"
REQUIRED_KEYS = ("name", "architecture", "precision", "preprocessing", "class_labels")
REQUIRED_PREPROCESSING = ("window_centre_hu", "window_width_hu", "input_size")
_METADATA_PROPS_FIELD = 14  # onnx.proto: ModelProto.metadata_props


def _varint(stream: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = stream.read(1)
        if not byte:
            return None if shift == 0 else _truncated()
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7


def _truncated() -> int:
    raise ValueError("truncated protobuf")


def _fields(buffer: bytes) -> dict[int, bytes]:
    """Length-delimited fields of a small message (StringStringEntryProto)."""
    import io
    stream = io.BytesIO(buffer)
    out: dict[int, bytes] = {}
    while (key := _varint(stream)) is not None:
        number, wire = key >> 3, key & 7
        if wire == 2:
            length = _varint(stream) or 0
            out[number] = stream.read(length)
        elif wire == 0:
            _varint(stream)
        elif wire == 1:
            stream.read(8)
        elif wire == 5:
            stream.read(4)
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX model file, skipping the graph by seeking.

    Raises
    ------
    ModelError
        The file is missing or not an ONNX protobuf.
    """
    path = Path(path)
    metadata: dict[str, str] = {}
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            while (key := _varint(stream)) is not None:
                number, wire = key >> 3, key & 7
                if wire == 0:
                    _varint(stream)
                elif wire == 1:
                    stream.seek(8, os.SEEK_CUR)
                elif wire == 5:
                    stream.seek(4, os.SEEK_CUR)
                elif wire == 2:
                    length = _varint(stream)
                    if length is None or stream.tell() + length > size:
                        raise ValueError("field runs past the end of the file")
                    if number == _METADATA_PROPS_FIELD:
                        entry = _fields(stream.read(length))
                        metadata[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
                    else:
                        stream.seek(length, os.SEEK_CUR)
                else:
                    raise ValueError(f"unsupported wire type {wire}")
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not an ONNX model file ({error})") from error
    return metadata


def validate_card(card: dict, source: str) -> dict:
    """Check the keys the runtime relies on; return the card unchanged."""
    missing = [key for key in REQUIRED_KEYS if key not in card]
    prep = card.get("preprocessing") or {}
    missing += [f"preprocessing.{key}" for key in REQUIRED_PREPROCESSING if key not in prep]
    if missing:
        raise ModelError(f"{source}: model card lacks {', '.join(missing)}")
    labels = card["class_labels"]
    if not isinstance(labels, list) or len(labels) != 5:
        raise ModelError(f"{source}: model card class_labels must list 5 labels, got {labels!r}")
    return card


def read_card(path: str | os.PathLike) -> dict:
    """The model card of an ONNX file (``metadata_props['model_card']``), validated.

    A sidecar ``<model>.card.json`` is used only when the ONNX file carries no
    card, so the card that ships inside the model always wins.

    Raises
    ------
    ModelError
        No card, card not JSON, or required keys missing.
    """
    path = Path(path)
    metadata = read_metadata(path)
    text = metadata.get(CARD_KEY)
    source = f"{path} metadata_props['{CARD_KEY}']"
    if text is None:
        sidecar = path.with_suffix(".card.json")
        if not sidecar.exists():
            raise ModelError(f"{path}: no model card (metadata_props['{CARD_KEY}'] is missing and "
                             f"there is no {sidecar.name})")
        text, source = sidecar.read_text(encoding="utf-8"), str(sidecar)
    try:
        card = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"{source}: model card is not JSON ({error})") from error
    if not isinstance(card, dict):
        raise ModelError(f"{source}: model card is not a JSON object")
    return validate_card(card, source)
