"""Read float initializers (weights) out of an ONNX file without the ``onnx`` package.

Grad-CAM needs the dense-head weights of the model, and onnxruntime does not
expose initializer values. The ``onnx`` package would, but it is not a runtime
dependency, so this module reads just enough of the protobuf wire format:
``ModelProto.graph`` (field 7) -> ``GraphProto.initializer`` (field 5) ->
``TensorProto`` name (8), dims (1), data_type (2), float_data (4),
raw_data (9), data_location (14). Everything else is skipped by length.
Field numbers are those of onnx/onnx.proto, stable since IR version 3.
"""

from __future__ import annotations

import os

import numpy as np

from deltaiqa_lite.errors import ModelError

__all__ = ["read_float_initializers"]

_FLOAT = 1  # TensorProto.DataType.FLOAT
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(buffer: memoryview):
    """Yield (field number, wire type, value) of one message; value is int or memoryview."""
    position = 0
    end = len(buffer)
    while position < end:
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(buffer, position)
        elif wire == 1:
            value, position = buffer[position:position + 8], position + 8
        elif wire == 2:
            length, position = _varint(buffer, position)
            value, position = buffer[position:position + length], position + length
        elif wire == 5:
            value, position = buffer[position:position + 4], position + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if position > end:
            raise ValueError("truncated message")
        yield number, wire, value


def _packed_varints(buffer: memoryview) -> list[int]:
    values = []
    position = 0
    while position < len(buffer):
        value, position = _varint(buffer, position)
        values.append(value)
    return values


def _tensor(buffer: memoryview) -> tuple[str, tuple[int, ...], np.ndarray | None]:
    name = ""
    dims: list[int] = []
    data_type = 0
    raw: memoryview | None = None
    floats: list[np.ndarray] = []
    external = False
    for number, wire, value in _fields(buffer):
        if number == 1:
            dims.extend(_packed_varints(value) if wire == 2 else [value])
        elif number == 2:
            data_type = value
        elif number == 4:
            floats.append(np.frombuffer(value, dtype="<f4") if wire == 2
                          else np.frombuffer(value, dtype="<f4", count=1))
        elif number == 8:
            name = bytes(value).decode("utf-8", "replace")
        elif number == 9:
            raw = value
        elif number == 14:
            external = value == _EXTERNAL
    shape = tuple(dims)
    if data_type != _FLOAT or external:
        return name, shape, None
    if raw is not None:
        data = np.frombuffer(raw, dtype="<f4")
    elif floats:
        data = np.concatenate(floats)
    else:
        data = np.zeros(0, dtype=np.float32)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"initializer {name!r}: {data.size} values for shape {shape}")
    return name, shape, data.astype(np.float32).reshape(shape)


def read_float_initializers(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All float32 initializers of the main graph of an ONNX model.

    Parameters
    ----------
    path : str or os.PathLike
        ``.onnx`` file with its weights inside (not external data).

    Returns
    -------
    dict of str to numpy.ndarray
        Initializer name -> float32 array of its declared shape.

    Raises
    ------
    ModelError
        The file cannot be read or is not a well-formed ONNX model.
    """
    try:
        with open(path, "rb") as handle:
            content = memoryview(handle.read())
    except OSError as error:
        raise ModelError(f"{path}: cannot read model file ({error.strerror})") from None
    weights: dict[str, np.ndarray] = {}
    try:
        graphs = [value for number, wire, value in _fields(content) if number == 7 and wire == 2]
        if not graphs:
            raise ValueError("no graph in the file")
        for number, wire, value in _fields(graphs[-1]):
            if number == 5 and wire == 2:
                name, _shape, data = _tensor(value)
                if data is not None:
                    weights[name] = data
    except (ValueError, IndexError) as error:
        raise ModelError(f"{path}: not a readable ONNX model ({error})") from None
    return weights
