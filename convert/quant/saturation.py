"""Can an INT8 model saturate onnxruntime's u8s8 integer kernels on x86 CPUs without VNNI?

On x86 CPUs without VNNI (AVX2 only, or AVX-512 without VNNI) onnxruntime's
MLAS runs uint8-activation x int8-weight convolutions and Gemms with
``VPMADDUBSW``: two neighbouring products along the reduction axis K are added
and the pair sum is *saturated* to int16 before the int32 accumulation
(``VPMADDWD`` with ones). With uint8 activations up to 255 and weights up to
127 a pair can reach 255 * 127 * 2 = 64770, far beyond 32767, and the
convolution silently returns a different number than on a VNNI CPU
(``VPDPBUSD`` accumulates in int32).

Two checks live here:

* :func:`saturation_report` / :func:`is_saturation_safe`, the proof by
  construction: every quantised weight satisfies
  ``max |w| * 255 * 2 <= 32767`` (i.e. ``|w| <= 64``, 7-bit weights), so no
  pair can saturate whatever the data.
* :func:`emulate`, an exact NumPy emulation of the integer path onnxruntime
  runs for a QDQ model (QLinearConv, QGemm, uint8 max pooling,
  QLinearGlobalAveragePool, requantisation as MLAS does it), with the int16
  pair saturation on or off. With it on it reproduces onnxruntime on an
  AVX2-only CPU; off, a VNNI CPU. The pairs are taken in MLAS's packing order:
  K runs over (kernel row, kernel column, input channel), channel fastest
  (the NHWC im2col of QLinearConv and the channel-blocked indirect kernels
  of ``MlasConvSym`` agree on it), pairs are (k, k+1) for even k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

INT16_MAX = 32767
INT16_MIN = -32768
UINT8_MAX = 255
# Largest |weight| for which no int16 pair sum can saturate with uint8 activations.
SAFE_WEIGHT_LIMIT = INT16_MAX // (2 * UINT8_MAX)  # 64
INTEGER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerSafety:
    """Saturation bound of one quantised convolution or Gemm."""

    node: str
    op: str
    activation_type: str     # uint8 | int8
    weight_type: str         # int8 | uint8
    max_abs_weight: int
    worst_pair_sum: int      # largest |a0*w0 + a1*w1| any input can produce on the u8s8 path
    safe: bool
    reason: str


def _load(model):
    import onnx

    if isinstance(model, (str, Path)):
        return onnx.load(str(model))
    return model


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _dq_source(name: str, producers: dict, inits: dict):
    """(quantised tensor name, zero point array or None) when ``name`` is a DequantizeLinear output."""
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    zero_point = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return node.input[0], zero_point


def saturation_report(model) -> list[LayerSafety]:
    """The saturation bound of every quantised Conv/Gemm/MatMul of a QDQ model.

    Parameters
    ----------
    model : path or onnx.ModelProto
        A QDQ model (``DequantizeLinear`` feeding the float op).

    Returns
    -------
    list of LayerSafety
        One entry per op whose activation and weight both come through
        ``DequantizeLinear``; a model without any yields an empty list.
    """
    graph = _load(model).graph
    producers, inits = _producers(graph), _initializers(graph)
    report = []
    for node in graph.node:
        if node.op_type not in INTEGER_OPS or len(node.input) < 2:
            continue
        activation = _dq_source(node.input[0], producers, inits)
        weight = _dq_source(node.input[1], producers, inits)
        if activation is None or weight is None or weight[0] not in inits:
            continue
        act_zp = activation[1]
        act_type = str(act_zp.dtype) if act_zp is not None else "uint8"
        raw = inits[weight[0]]
        weight_type = str(raw.dtype)
        max_abs = int(np.abs(raw.astype(np.int32)).max())
        if weight_type == "uint8":
            # MLAS's u8u8 kernels widen both operands to int16 and use VPMADDWD: no int16 sum.
            worst, safe, reason = 0, True, "uint8 weights: u8u8 kernels accumulate in int32 (no int16 pair sum)"
        else:
            # int8 activations are shifted to uint8 (x ^ 0x80) by MLAS's x86 s8s8 paths, so
            # they meet the same VPMADDUBSW bound as uint8 ones.
            worst = 2 * UINT8_MAX * max_abs
            safe = worst <= INT16_MAX
            reason = (f"max |w| {max_abs} * 255 * 2 = {worst} "
                      + ("<= 32767: no int16 pair sum can saturate" if safe
                         else "> 32767: int16 pair sums can saturate on CPUs without VNNI"))
        report.append(LayerSafety(node.name, node.op_type, act_type, weight_type, max_abs, worst, safe, reason))
    return report


def is_saturation_safe(model) -> bool:
    """True when every quantised op passes :func:`saturation_report` (and there is at least one)."""
    report = saturation_report(model)
    return bool(report) and all(layer.safe for layer in report)


def report_dicts(report: list[LayerSafety]) -> list[dict]:
    return [asdict(layer) for layer in report]


# -- exact emulation of the integer path ------------------------------------------------------

def _rint(values: np.ndarray) -> np.ndarray:
    return np.rint(values)  # round half to even, as std::nearbyint and CVTPS2DQ


def _requantize(acc: np.ndarray, scale: np.ndarray, zero_point: int, dtype) -> np.ndarray:
    """MLAS requantisation: float32(int32 acc) * float32 scale, round to even, + zero point, clamp."""
    info = np.iinfo(dtype)
    scaled = acc.astype(np.float32) * scale.astype(np.float32)
    return np.clip(_rint(scaled) + zero_point, info.min, info.max).astype(dtype)


def _quantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    info = np.iinfo(zero_point.dtype)
    q = _rint(x.astype(np.float32) / scale.astype(np.float32)) + zero_point.astype(np.float32)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def integer_matmul(activations: np.ndarray, weights: np.ndarray, *, saturate: bool) -> np.ndarray:
    """Exact ``activations @ weights`` as MLAS's u8s8 kernel computes it.

    Parameters
    ----------
    activations : uint8 [M, K]
        Raw quantised activations (zero point not removed: MLAS multiplies raw values).
    weights : int8 [K, N]
        Raw quantised weights, K in MLAS's packing order.
    saturate : bool
        Saturate each pair sum ``a[k] w[k] + a[k+1] w[k+1]`` (k even) to int16,
        as ``VPMADDUBSW`` does on CPUs without VNNI.

    Returns
    -------
    int64 [M, N]
    """
    a = activations.astype(np.float64)
    w = weights.astype(np.float64)
    acc = np.rint(a @ w).astype(np.int64)  # float64 is exact far beyond these sums
    if not saturate:
        return acc
    k = weights.shape[0]
    even = weights[0:k - 1:2].astype(np.int32)
    odd = weights[1:k:2].astype(np.int32)
    # Only a pair of same-sign weights with 255 * (|w0| + |w1|) > 32767 can saturate.
    candidate = (even * odd > 0) & (UINT8_MAX * (np.abs(even) + np.abs(odd)) > INT16_MAX)
    pair_index, column = np.nonzero(candidate)
    if pair_index.size == 0:
        return acc
    a32 = activations.astype(np.int32)
    for start in range(0, pair_index.size, 4096):
        pairs, cols = pair_index[start:start + 4096], column[start:start + 4096]
        sums = (a32[:, 2 * pairs] * even[pairs, cols] + a32[:, 2 * pairs + 1] * odd[pairs, cols])
        correction = np.clip(sums, INT16_MIN, INT16_MAX) - sums
        np.add.at(acc.T, cols, correction.T.astype(np.int64))
    return acc


def _im2col_nhwc(x: np.ndarray, kernel: tuple[int, int], strides, pads, pad_value: int) -> tuple[np.ndarray, int, int]:
    """[H, W, C] -> [OH * OW, kh * kw * C], K ordered (row, column, channel) as MLAS packs it."""
    kh, kw = kernel
    top, left, bottom, right = pads
    padded = np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(0, 1))
    windows = windows[::strides[0], ::strides[1]]          # [OH, OW, C, kh, kw]
    oh, ow = windows.shape[:2]
    cols = windows.transpose(0, 1, 3, 4, 2).reshape(oh * ow, -1)
    return cols, oh, ow


class _Emulator:
    """Walks a QDQ graph in order, running quantised ops as onnxruntime's integer kernels do."""

    def __init__(self, model, saturate: bool):
        graph = _load(model).graph
        self.graph = graph
        self.saturate = saturate
        self.inits = _initializers(graph)
        self.producers = _producers(graph)
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _attr(self, node, name, default):
        for attribute in node.attribute:
            if attribute.name == name:
                import onnx

                return onnx.helper.get_attribute_value(attribute)
        return default

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = dict(self.inits)
        values[self.graph.input[0].name] = image
        quantised: dict[str, np.ndarray] = {}   # QuantizeLinear outputs computed by a fused integer op
        for node in self.graph.node:
            if node.output[0] in quantised:
                values[node.output[0]] = quantised.pop(node.output[0])
                continue
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None:
                raise NotImplementedError(f"{node.name}: op {node.op_type} is not emulated")
            handler(node, values, quantised)
        return values

    # float or quantisation ops --------------------------------------------------------------
    def _op_QuantizeLinear(self, node, values, quantised):
        x, scale, zp = (values[n] for n in node.input[:3])
        values[node.output[0]] = _quantize(x, scale, zp)

    def _op_DequantizeLinear(self, node, values, quantised):
        q = values[node.input[0]]
        scale = values[node.input[1]]
        zp = values[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale, q.dtype)
        if scale.ndim == 1 and scale.size > 1:
            axis = self._attr(node, "axis", 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        values[node.output[0]] = ((q.astype(np.int64) - zp.astype(np.int64)).astype(np.float32)
                                  * scale.astype(np.float32))

    def _op_Reshape(self, node, values, quantised):
        values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]].astype(np.int64))

    def _op_Transpose(self, node, values, quantised):
        values[node.output[0]] = np.transpose(values[node.input[0]], self._attr(node, "perm", None))

    def _op_Squeeze(self, node, values, quantised):
        axes = tuple(int(a) for a in values[node.input[1]]) if len(node.input) > 1 else None
        values[node.output[0]] = np.squeeze(values[node.input[0]], axis=axes)

    def _op_Softmax(self, node, values, quantised):
        x = values[node.input[0]]
        axis = self._attr(node, "axis", -1)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        values[node.output[0]] = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)

    def _op_MaxPool(self, node, values, quantised):
        # Max commutes with the monotone Q/DQ of one scale: same as onnxruntime's uint8 max pool.
        x = values[node.input[0]]                                  # [N, C, H, W]
        kh, kw = self._attr(node, "kernel_shape", None)
        sh, sw = self._attr(node, "strides", [1, 1])
        pads = self._attr(node, "pads", [0, 0, 0, 0])
        if any(pads):
            x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=-np.inf)
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        values[node.output[0]] = windows.max(axis=(4, 5))

    def _op_GlobalAveragePool(self, node, values, quantised):
        quantize = self._single_quantize_consumer(node)
        source = _dq_source(node.input[0], self.producers, self.inits)
        if quantize is None or source is None:
            values[node.output[0]] = values[node.input[0]].mean(axis=(2, 3), keepdims=True)
            return
        # QLinearGlobalAveragePool: int32 sum, requantised with x_scale / (y_scale * count).
        dq = self.producers[node.input[0]]
        q = values[source[0]].astype(np.int64)
        x_scale, x_zp = values[dq.input[1]], int(values[dq.input[2]])
        y_scale, y_zp = values[quantize.input[1]], values[quantize.input[2]]
        count = q.shape[2] * q.shape[3]
        acc = q.sum(axis=(2, 3), keepdims=True) - x_zp * count
        scale = np.float32(x_scale) / (np.float32(y_scale) * np.float32(count))
        quantised[quantize.output[0]] = _requantize(acc, np.asarray(scale), int(y_zp), y_zp.dtype)
        values[node.output[0]] = None

    def _single_quantize_consumer(self, node):
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            return users[0]
        return None

    # integer ops ----------------------------------------------------------------------------
    def _integer_operands(self, node, values):
        """(uint8 activations, x zero point, x scale, int8 weights, weight scales, int32 bias) or None."""
        quantize = self._single_quantize_consumer(node)
        x_src = _dq_source(node.input[0], self.producers, self.inits)
        w_src = _dq_source(node.input[1], self.producers, self.inits)
        if quantize is None or x_src is None or w_src is None or w_src[0] not in self.inits:
            return None
        x_dq, w_dq = self.producers[node.input[0]], self.producers[node.input[1]]
        x_q = values[x_src[0]]
        w_q = self.inits[w_src[0]]
        if x_q.dtype != np.uint8 or w_q.dtype != np.int8 or np.any(values[w_dq.input[2]]):
            return None  # only the u8s8 symmetric-weight path is emulated integer-exactly
        bias = None
        if len(node.input) > 2 and node.input[2]:
            b_src = _dq_source(node.input[2], self.producers, self.inits)
            bias = self.inits[b_src[0]].astype(np.int64) if b_src else None
            if bias is None:
                return None
        return (x_q, int(values[x_dq.input[2]]), np.float32(values[x_dq.input[1]]), w_q,
                values[w_dq.input[1]].astype(np.float32).reshape(-1), bias, quantize)

    def _finish(self, node, values, quantised, acc, x_scale, w_scale, quantize):
        y_scale, y_zp = values[quantize.input[1]], values[quantize.input[2]]
        # onnxruntime: output scale = x_scale * w_scale[n] / y_scale, in float32.
        scale = (np.float32(x_scale) * w_scale / np.float32(y_scale)).astype(np.float32)
        quantised[quantize.output[0]] = _requantize(acc, scale, int(y_zp), y_zp.dtype)
        values[node.output[0]] = None

    def _op_Relu(self, node, values, quantised):
        values[node.output[0]] = np.maximum(values[node.input[0]], np.float32(0))

    def _is_float(self, node, values) -> bool:
        """A layer left in float by the quantizer: float operands, no QuantizeLinear fused after."""
        return (self._single_quantize_consumer(node) is None
                and _dq_source(node.input[1], self.producers, self.inits) is None
                and values[node.input[0]].dtype == np.float32)

    def _conv_geometry(self, node):
        if self._attr(node, "group", 1) != 1 or any(d != 1 for d in self._attr(node, "dilations", [1, 1])):
            raise NotImplementedError(f"{node.name}: grouped or dilated convolution")
        auto_pad = self._attr(node, "auto_pad", b"NOTSET")
        if auto_pad not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise NotImplementedError(f"{node.name}: auto_pad {auto_pad!r}")
        return self._attr(node, "strides", [1, 1]), self._attr(node, "pads", [0, 0, 0, 0])

    def _float_conv(self, node, values):
        """A convolution kept in float (e.g. conv1): float32 im2col times float32 weights."""
        x, w = values[node.input[0]], values[node.input[1]].astype(np.float32)
        strides, pads = self._conv_geometry(node)
        n_out, _, kh, kw = w.shape
        weights = w.transpose(2, 3, 1, 0).reshape(-1, n_out)
        bias = values[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else 0
        outputs = []
        for image in x:
            cols, oh, ow = _im2col_nhwc(image.transpose(1, 2, 0), (kh, kw), strides,
                                        (pads[0], pads[1], pads[2], pads[3]), 0)
            outputs.append((cols.astype(np.float32) @ weights + bias).reshape(oh, ow, n_out).transpose(2, 0, 1))
        values[node.output[0]] = np.stack(outputs).astype(np.float32)

    def _op_Conv(self, node, values, quantised):
        operands = self._integer_operands(node, values)
        if operands is None and self._is_float(node, values):
            self._float_conv(node, values)
            return
        if operands is None:
            raise NotImplementedError(f"{node.name}: only u8s8 QDQ convolutions are emulated")
        x_q, x_zp, x_scale, w_q, w_scale, bias, quantize = operands
        strides, pads = self._conv_geometry(node)
        n_out, _, kh, kw = w_q.shape
        weights = w_q.transpose(2, 3, 1, 0).reshape(-1, n_out)   # [kh*kw*C, N]
        column_sums = weights.astype(np.int64).sum(axis=0)
        outputs = []
        for image in x_q:                                        # [C, H, W]
            cols, oh, ow = _im2col_nhwc(image.transpose(1, 2, 0), (kh, kw), strides,
                                        (pads[0], pads[1], pads[2], pads[3]), x_zp)
            acc = integer_matmul(cols, weights, saturate=self.saturate)
            acc = acc - x_zp * column_sums + (bias if bias is not None else 0)
            outputs.append(acc.reshape(oh, ow, n_out).transpose(2, 0, 1))
        self._finish(node, values, quantised, np.stack(outputs), x_scale, w_scale[:, None, None], quantize)

    def _op_Gemm(self, node, values, quantised):
        operands = self._integer_operands(node, values)
        if operands is None and self._is_float(node, values):
            # A Gemm kept in float (the classifier head): float32 as onnxruntime runs it.
            a = values[node.input[0]]
            b = values[node.input[1]].astype(np.float32)
            a = a.T if self._attr(node, "transA", 0) else a
            b = b.T if self._attr(node, "transB", 0) else b
            y = np.float32(self._attr(node, "alpha", 1.0)) * (a.reshape(a.shape[0], -1) @ b)
            if len(node.input) > 2 and node.input[2]:
                y = y + np.float32(self._attr(node, "beta", 1.0)) * values[node.input[2]].astype(np.float32)
            values[node.output[0]] = y.astype(np.float32)
            return
        if operands is None:
            raise NotImplementedError(f"{node.name}: only u8s8 QDQ Gemms are emulated")
        x_q, x_zp, x_scale, w_q, w_scale, bias, quantize = operands
        if self._attr(node, "transA", 0):
            raise NotImplementedError(f"{node.name}: transA")
        weights = w_q.T if self._attr(node, "transB", 0) else w_q   # [K, N]
        acc = integer_matmul(x_q.reshape(x_q.shape[0], -1), weights, saturate=self.saturate)
        acc = acc - x_zp * weights.astype(np.int64).sum(axis=0) + (bias if bias is not None else 0)
        self._finish(node, values, quantised, acc, x_scale, w_scale, quantize)


def emulate(model, images: np.ndarray, *, saturate: bool = True,
            outputs: tuple[str, ...] = ("probabilities",)) -> np.ndarray | dict[str, np.ndarray]:
    """Run a u8s8 QDQ model as onnxruntime's integer kernels do, one slice at a time.

    Parameters
    ----------
    model : path or onnx.ModelProto
    images : float32 [N, H, W, 1]
    saturate : bool, default True
        Saturate int16 pair sums: the arithmetic of x86 CPUs without VNNI.
        False gives the arithmetic of VNNI CPUs.
    outputs : tuple of str
        Graph outputs to return; one name returns its array, several a dict.

    Returns
    -------
    numpy.ndarray or dict
        Concatenated over the slices.
    """
    emulator = _Emulator(model, saturate)
    collected: dict[str, list] = {name: [] for name in outputs}
    for index in range(len(images)):
        values = emulator.run(np.ascontiguousarray(images[index:index + 1], dtype=np.float32))
        for name in outputs:
            collected[name].append(values[name])
    result = {name: np.concatenate(parts) for name, parts in collected.items()}
    return result[outputs[0]] if len(outputs) == 1 else result
