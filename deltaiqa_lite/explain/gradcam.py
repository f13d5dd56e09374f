"""Grad-CAM on ``conv5`` with onnxruntime and NumPy only (no TensorFlow).

The original Delta-IQA computes Grad-CAM with a TensorFlow GradientTape:

    grads   = d p_c / d conv5           (c = predicted class, p = softmax output)
    weights = mean of grads over (batch, rows, cols)       one weight per channel
    cam     = ReLU(conv5 . weights) / max                   30 x 30, in 0..1
    map     = cv2.resize(cam, image size)                   bilinear

Here the FP32 ONNX model returns the post-ReLU ``conv5`` activations as a
second output, and the gradient from ``conv5`` to the class probability is
worked out analytically from the dense-head weights (read from the model's
initializers by shape): pool3 (max 3x3, stride 2, valid, 30 -> 14), global
average pooling (1/196), dense1 + ReLU (1024), dense2 + ReLU (512), dense3 +
softmax (5). Dropout is inactive at inference, as on the tape.

Two details follow TensorFlow on purpose:

- max-pool gradient goes to one position per window, the *first* maximum in
  row-major order (TF's CPU ``MaxPoolGrad`` keeps the first on ties); with
  ReLU activations all-zero windows are common;
- the ReLU derivative at exactly 0 is 0 (TF ``ReluGrad`` uses ``x > 0``).

Because every pool window routes its gradient to exactly one position, the
spatial sum of ``d p_c / d conv5`` per channel equals ``d p_c / d gap``, so the
channel weights are ``d p_c / d gap / 900`` however ties fall; the full
gradient is still computed (and tested against finite differences) so the
code says what the tape does.

Grad-CAM always runs on the FP32 model, whichever precision is used for
scoring: the INT8 model stores its dense weights quantised, and the map
should not carry quantisation noise. The score and class shown beside a map
are the FP32 model's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError, InputError, ModelError
from deltaiqa_lite.model.onnx_weights import read_float_initializers
from deltaiqa_lite.model.preprocess import resize_bilinear, window_hu

__all__ = ["DenseHead", "HeadPass", "Explanation", "Explainer", "head_forward",
           "conv5_gradient", "gradcam", "heatmap_on_slice", "write_explanation", "CONV5_OUTPUT"]

CONV5_OUTPUT = "conv5"
PROBABILITIES_OUTPUT = "probabilities"
IMAGE_INPUT = "image"
CONV5_SIZE = 30
POOL_SIZE = 3
POOL_STRIDE = 2
POOLED_SIZE = (CONV5_SIZE - POOL_SIZE) // POOL_STRIDE + 1  # 14
# Largest |numpy head - onnxruntime| on the probabilities that still means
# "the weights found by shape are the model's": float32 graph vs float64 here
# differ by ~1e-7; a wrong tensor differs by orders of magnitude more.
HEAD_CHECK_TOLERANCE = 1e-4

_HEAD_SHAPES = {
    "kernel1": (256, 1024), "bias1": (1024,),
    "kernel2": (1024, 512), "bias2": (512,),
    "kernel3": (512, 5), "bias3": (5,),
}


@dataclass(frozen=True)
class DenseHead:
    """Dense layers after ``gap``: weights as Keras stores them (kernel ``[in, out]``)."""

    kernel1: np.ndarray
    bias1: np.ndarray
    kernel2: np.ndarray
    bias2: np.ndarray
    kernel3: np.ndarray
    bias3: np.ndarray

    @classmethod
    def from_onnx(cls, path: str | os.PathLike) -> "DenseHead":
        """Find the dense-head weights among a model's float initializers by shape.

        Parameters
        ----------
        path : str or os.PathLike
            FP32 Delta-IQA ONNX model.

        Returns
        -------
        DenseHead

        Raises
        ------
        ModelError
            A kernel shape is missing (e.g. an INT8 model, whose dense weights
            are quantised) or a shape is found more than once. A missing bias
            is taken as zero (exporters drop all-zero biases); the caller
            must check the head against the model's probabilities
            (:meth:`Explainer.explain_planes` does).
        """
        initializers = read_float_initializers(path)
        found = {}
        for role, shape in _HEAD_SHAPES.items():
            # Biases may be stored as [1, n]; compare without unit dimensions.
            matches = [name for name, value in initializers.items()
                       if value.shape == shape
                       or (role.startswith("bias") and value.squeeze().shape == shape)]
            if len(matches) > 1:
                raise ModelError(f"{path}: {len(matches)} float32 initializers of shape {shape} "
                                 f"({', '.join(sorted(matches))}); cannot tell which is {role}")
            if matches:
                found[role] = initializers[matches[0]].reshape(shape).astype(np.float64)
            elif role.startswith("bias"):
                # Exporters fold an all-zero bias away (tf2onnx drops "Add 0"), as in
                # freshly initialised models. Zeros are then exact; Explainer checks
                # the head against the model's own probabilities on every batch anyway.
                found[role] = np.zeros(shape, dtype=np.float64)
            else:
                raise ModelError(
                    f"{path}: no float32 initializer of shape {shape} ({role} of the dense head); "
                    "Grad-CAM needs the FP32 model (INT8 models store the dense weights quantised)")
        return cls(**found)


@dataclass(frozen=True)
class HeadPass:
    """Forward pass of the head from ``conv5``, kept for the backward pass."""

    pooled: np.ndarray        # [N, 14, 14, 256]
    window_argmax: np.ndarray  # [N, 14, 14, 256] int8, 0..8 row-major in the 3x3 window
    gap: np.ndarray           # [N, 256]
    pre1: np.ndarray          # [N, 1024] before ReLU
    pre2: np.ndarray          # [N, 512] before ReLU
    probabilities: np.ndarray  # [N, 5]


def _window_views(conv5: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """The nine (row, col) offsets of the 3x3 pool window, row-major, and their strided views."""
    span = POOL_STRIDE * (POOLED_SIZE - 1) + 1
    for dy in range(POOL_SIZE):
        for dx in range(POOL_SIZE):
            yield dy, dx, conv5[:, dy:dy + span:POOL_STRIDE, dx:dx + span:POOL_STRIDE, :]


def _check_conv5(conv5: np.ndarray) -> np.ndarray:
    conv5 = np.asarray(conv5)
    if conv5.ndim != 4 or conv5.shape[1:3] != (CONV5_SIZE, CONV5_SIZE):
        raise ValueError(f"conv5 must be [N, {CONV5_SIZE}, {CONV5_SIZE}, C], got {conv5.shape}")
    return conv5.astype(np.float64, copy=False)


def head_forward(conv5: np.ndarray, head: DenseHead) -> HeadPass:
    """Run pool3, gap and the dense layers on ``conv5`` activations.

    Parameters
    ----------
    conv5 : numpy.ndarray
        ``[N, 30, 30, 256]`` post-ReLU activations.
    head : DenseHead

    Returns
    -------
    HeadPass
    """
    conv5 = _check_conv5(conv5)
    pooled = None
    window_argmax = None
    for index, (_dy, _dx, view) in enumerate(_window_views(conv5)):
        if pooled is None:
            pooled = view.copy()
            window_argmax = np.zeros(view.shape, dtype=np.int8)
            continue
        # Strictly greater: on ties the earlier (row-major) position keeps it, as in TF.
        better = view > pooled
        pooled = np.where(better, view, pooled)
        window_argmax[better] = index
    gap = pooled.mean(axis=(1, 2))
    pre1 = gap @ head.kernel1 + head.bias1
    pre2 = np.maximum(pre1, 0.0) @ head.kernel2 + head.bias2
    logits = np.maximum(pre2, 0.0) @ head.kernel3 + head.bias3
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    return HeadPass(pooled, window_argmax, gap, pre1, pre2, probabilities)


def _gap_gradient(forward: HeadPass, head: DenseHead, classes: np.ndarray) -> np.ndarray:
    """d p_c / d gap, [N, 256]."""
    p = forward.probabilities
    n = p.shape[0]
    p_c = p[np.arange(n), classes]
    d_logits = -p_c[:, None] * p  # softmax Jacobian row: p_c (delta_ck - p_k)
    d_logits[np.arange(n), classes] += p_c
    d_pre2 = (d_logits @ head.kernel3.T) * (forward.pre2 > 0)
    d_pre1 = (d_pre2 @ head.kernel2.T) * (forward.pre1 > 0)
    return d_pre1 @ head.kernel1.T


def conv5_gradient(conv5: np.ndarray, head: DenseHead,
                   classes: np.ndarray | None = None) -> tuple[np.ndarray, HeadPass, np.ndarray]:
    """Gradient of the class probability with respect to ``conv5``.

    Parameters
    ----------
    conv5 : numpy.ndarray
        ``[N, 30, 30, 256]`` post-ReLU activations.
    head : DenseHead
    classes : numpy.ndarray of int, optional
        Class per slice; default the predicted class ``argmax p``.

    Returns
    -------
    gradient : numpy.ndarray
        ``[N, 30, 30, 256]`` float64, ``d p_c / d conv5``.
    forward : HeadPass
    classes : numpy.ndarray
        The classes used.
    """
    conv5 = _check_conv5(conv5)
    forward = head_forward(conv5, head)
    if classes is None:
        classes = forward.probabilities.argmax(axis=1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    d_gap = _gap_gradient(forward, head, classes)
    d_pooled = np.broadcast_to((d_gap / (POOLED_SIZE * POOLED_SIZE))[:, None, None, :],
                               forward.pooled.shape)
    gradient = np.zeros(conv5.shape, dtype=np.float64)
    for index, (_dy, _dx, view) in enumerate(_window_views(gradient)):
        # Views of one offset never overlap themselves (stride 2), so += is exact;
        # overlapping windows of different offsets add up as in MaxPoolGrad.
        view += np.where(forward.window_argmax == index, d_pooled, 0.0)
    return gradient, forward, classes


def gradcam(conv5: np.ndarray, head: DenseHead,
            classes: np.ndarray | None = None) -> tuple[np.ndarray, HeadPass, np.ndarray]:
    """Grad-CAM maps on the ``conv5`` grid, as the original computes them.

    Parameters
    ----------
    conv5 : numpy.ndarray
        ``[N, 30, 30, 256]`` post-ReLU activations.
    head : DenseHead
    classes : numpy.ndarray of int, optional
        Class to explain per slice; default the predicted class.

    Returns
    -------
    cams : numpy.ndarray
        ``[N, 30, 30]`` float32 in 0..1. A map whose weighted sum is nowhere
        positive is all zeros (TensorFlow would give 0/0 = NaN there).
    forward : HeadPass
    classes : numpy.ndarray
    """
    conv5 = _check_conv5(conv5)
    gradient, forward, classes = conv5_gradient(conv5, head, classes)
    # The original averages over (batch, rows, cols) with a batch of one slice.
    channel_weights = gradient.mean(axis=(1, 2))
    cams = np.maximum(np.einsum("nhwc,nc->nhw", conv5, channel_weights), 0.0)
    peaks = cams.max(axis=(1, 2), keepdims=True)
    cams = np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0)
    return cams.astype(np.float32), forward, classes


@dataclass
class Explanation:
    """Grad-CAM of one slice, or the reason there is none.

    ``heatmap`` has the size of the input slice (rows x cols of the file, not
    the 512 network input): the 30x30 map is resized bilinearly to the
    centre square the model saw and placed there; outside that square (only
    for non-square slices) it is NaN. ``display`` is the slice windowed the
    way the model saw it (0..1), for drawing.
    """

    path: str
    frame: int | None = None
    status: str = "ok"
    error: str | None = None
    score: float | None = None
    likert: int | None = None
    label: str | None = None
    explained_class: int | None = None
    probabilities: tuple[float, ...] | None = None
    cam: np.ndarray | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    display: np.ndarray | None = field(default=None, repr=False)
    empty_map: bool = False
    model: str | None = None

    @property
    def name(self) -> str:
        """``path`` or ``path[frame]`` for multi-frame inputs."""
        return self.path if self.frame is None else f"{self.path}[{self.frame}]"


def heatmap_on_slice(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Place a ``conv5``-grid map on a slice of ``shape``, over its centre square.

    Parameters
    ----------
    cam : numpy.ndarray
        ``[30, 30]`` map in 0..1.
    shape : (int, int)
        Rows and columns of the input slice.

    Returns
    -------
    numpy.ndarray
        float32 ``shape``; NaN outside the centre square.
    """
    rows, cols = shape
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    # cv2.resize(cam, size) as in the original, then clipped: bilinear weights
    # stay within 0..1 but float rounding may overshoot by an ulp.
    square = np.clip(resize_bilinear(cam, side), 0.0, 1.0)
    if (rows, cols) == (side, side):
        return square
    heatmap = np.full((rows, cols), np.nan, dtype=np.float32)
    heatmap[top:top + side, left:left + side] = square
    return heatmap


class Explainer:
    """Grad-CAM for files and arrays, on an FP32 model run by onnxruntime.

    Parameters
    ----------
    model : str
        ``"fp32"`` (default) or a path to an FP32 Delta-IQA ONNX model with a
        ``conv5`` output. ``"int8"`` is refused: see the module notes.
    provider, threads, batch_size, image_window :
        Which provider and threads run the model, how many slices per call,
        the window of plain images (as :class:`deltaiqa_lite.Scorer` takes them).
    scorer : Scorer or LoadedModel, optional
        An FP32 scorer (or loaded model) whose session to use instead of
        making another.
    """

    def __init__(self, model: str | os.PathLike = "fp32", *, provider: str = "auto",
                 threads: int | None = None, batch_size: int = 4,
                 image_window: tuple[float, float] | None = None, scorer=None) -> None:
        from deltaiqa_lite.model.loaded import load_model  # imported here: keeps `explain` off the cold path

        if str(model).lower() == "int8":
            raise ModelError("Grad-CAM runs on the FP32 model (the INT8 model stores its dense "
                             "weights quantised); use --model fp32 or a path to an FP32 model")
        # An FP32 Scorer that already exists (Scorer.explain) lends its session.
        self.scorer = scorer if scorer is not None else load_model(
            model, provider=provider, threads=threads, batch_size=batch_size)
        self.model_path = str(self.scorer.model_path)
        if self.scorer.precision != "fp32":
            raise ModelError(f"{self.model_path}: model card says precision "
                             f"'{self.scorer.precision}'; Grad-CAM runs on the FP32 model")
        outputs = [o.name for o in self.scorer.session.get_outputs()]
        if CONV5_OUTPUT not in outputs:
            raise ModelError(f"{self.model_path}: no '{CONV5_OUTPUT}' output (outputs are "
                             f"{', '.join(outputs)}); Grad-CAM needs the conv5 activations")
        self.head = DenseHead.from_onnx(self.model_path)
        self.batch_size = int(batch_size) if scorer is None else self.scorer.batch_size
        self.image_window = image_window
        self.class_labels = self.scorer.class_labels
        self.model_name = self.scorer.model_name

    def explain_planes(self, planes: np.ndarray) -> tuple[np.ndarray, HeadPass, np.ndarray]:
        """Grad-CAM of prepared network inputs.

        Parameters
        ----------
        planes : numpy.ndarray
            ``[N, 512, 512]`` or ``[N, 512, 512, 1]`` in 0..1.

        Returns
        -------
        cams, forward, classes : as :func:`gradcam`.

        Raises
        ------
        ModelError
            The dense weights found by shape do not reproduce the model's
            probabilities, so the gradient would be of another network.
        """
        batch = np.asarray(planes, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[..., None]
        probabilities, conv5 = self.scorer.session.run(
            [PROBABILITIES_OUTPUT, CONV5_OUTPUT], {IMAGE_INPUT: np.ascontiguousarray(batch)})
        cams, forward, classes = gradcam(conv5, self.head)
        difference = float(np.abs(forward.probabilities - probabilities).max())
        if difference > HEAD_CHECK_TOLERANCE:
            raise ModelError(f"{self.model_path}: dense weights found by shape give probabilities "
                             f"{difference:.2g} away from the model's; Grad-CAM would be wrong")
        return cams, forward, classes

    def _prepare(self, slice_) -> tuple[np.ndarray, np.ndarray]:
        from deltaiqa_lite.model.preprocess import prepare_slice  # the one slice -> network input rule

        preprocessing = self.scorer.preprocessing
        if slice_.unit is not None:
            display = np.asarray(slice_.unit, dtype=np.float32)
        else:
            display = window_hu(slice_.hu, preprocessing.window_centre_hu,
                                preprocessing.window_width_hu)
        return prepare_slice(slice_, preprocessing), display

    def _flush(self, pending: list) -> list[Explanation]:
        planes = np.stack([plane for _slice, plane, _display in pending])
        cams, forward, classes = self.explain_planes(planes)
        results = []
        for i, (slice_, _plane, display) in enumerate(pending):
            probabilities = forward.probabilities[i]
            likert = int(probabilities.argmax())
            results.append(Explanation(
                path=str(slice_.path), frame=slice_.frame,
                score=float(np.dot(np.arange(probabilities.size), probabilities)),
                likert=likert, label=self.class_labels[likert],
                explained_class=int(classes[i]),
                probabilities=tuple(float(p) for p in probabilities),
                cam=cams[i], heatmap=heatmap_on_slice(cams[i], display.shape),
                display=display, empty_map=not bool(cams[i].max() > 0),
                model=self.model_name))
        return results

    def iter_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[Explanation]:
        """Explain every slice of every file; a bad file yields one error record, never raises.

        Parameters
        ----------
        paths : iterable of path
            Files or folders (walked recursively, as ``score`` does).

        Yields
        ------
        Explanation
            In input order, one per slice, or one with ``status="error"`` per
            file that could not be read.
        """
        from deltaiqa_lite.read import expand_paths, read_slices

        pending: list = []
        for path in expand_paths(list(paths)):
            try:
                prepared = [(s, *self._prepare(s))
                            for s in read_slices(path, image_window=self.image_window)]
                if not prepared:
                    raise InputError(str(path), "no slices in file")
                error = None
            except InputError as caught:
                error = str(caught)
            except (DeltaIQAError, ValueError) as caught:
                error = f"{path}: {caught}"
            if error is not None:
                # Flush first so records stay in input order.
                if pending:
                    yield from self._flush(pending)
                    pending = []
                yield Explanation(path=str(path), status="error", error=error,
                                  model=self.model_name)
                continue
            for item in prepared:
                pending.append(item)
                if len(pending) >= self.batch_size:
                    yield from self._flush(pending)
                    pending = []
        if pending:
            yield from self._flush(pending)

    def explain_paths(self, paths: Iterable[str | os.PathLike]) -> list[Explanation]:
        """All explanations of :meth:`iter_paths` as a list (holds every map in memory)."""
        return list(self.iter_paths(paths))

    def explain_array(self, hu: np.ndarray, *, name: str = "array") -> Explanation:
        """Grad-CAM of one 2-D slice given in HU (display orientation)."""
        from deltaiqa_lite.read import Slice

        hu = np.asarray(hu, dtype=np.float32)
        if hu.ndim != 2:
            raise InputError(name, f"expected a 2-D slice in HU, got shape {hu.shape}")
        item = Slice(path=name, hu=hu)
        return self._flush([(item, *self._prepare(item))])[0]


def write_explanation(explanation: Explanation, folder: str | os.PathLike, *,
                      save_map: bool = False, alpha: float | None = None) -> list[Path]:
    """Write the overlay PNG (and the map as ``.npy``) of one explanation.

    File names are the input's name plus ``.gradcam.png`` (``_f<frame>`` for
    multi-frame inputs), so outputs sort beside their inputs.

    Parameters
    ----------
    explanation : Explanation
        An ``ok`` explanation.
    folder : path
        Output folder (created if missing).
    save_map : bool
        Also write ``.gradcam.npy``: the float32 map at the input's size, NaN
        outside the square the model saw.
    alpha : float, optional
        Colour weight of the overlay (default ``draw.DEFAULT_ALPHA``).

    Returns
    -------
    list of Path
        Files written.
    """
    from deltaiqa_lite.explain import draw

    if explanation.status != "ok" or explanation.heatmap is None or explanation.display is None:
        raise ValueError(f"{explanation.name}: nothing to write ({explanation.error})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(explanation.path).name
    if explanation.frame is not None:
        stem += f"_f{explanation.frame:04d}"
    png = folder / f"{stem}.gradcam.png"
    rgb = draw.overlay(explanation.display, explanation.heatmap,
                       draw.DEFAULT_ALPHA if alpha is None else alpha)
    draw.save_png(rgb, png)
    written = [png]
    if save_map:
        npy = folder / f"{stem}.gradcam.npy"
        np.save(npy, explanation.heatmap.astype(np.float32))
        written.append(npy)
    return written
