"""The model contract: card, preprocessing, sessions and providers, CPU capability, ONNX weights.

- :mod:`.card`          the model card carried in the ONNX ``metadata_props``
- :mod:`.preprocess`    the one HU -> network input rule (window, crop, resize)
- :mod:`.session`       model names, onnxruntime sessions and execution providers
- :mod:`.loaded`        a model made ready: file, card, preprocessing, session
- :mod:`.cpu`           CPU flags (VNNI, AVX2 ...) and the INT8 saturation risk
- :mod:`.onnx_weights`  float initializers read from an ONNX file without onnx

Layer: imports :mod:`deltaiqa_lite.errors`, NumPy and onnxruntime only; never
the readers, physics, the scorer or anything above it.
"""
