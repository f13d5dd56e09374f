"""The deltaiqa-lite benchmark suite: ``python -m benchmarks run [--smoke] [--out benchmarks/results]``.

Runtime measurements come from :mod:`deltaiqa_lite.engine.bench` (the same code as
``deltaiqa-lite bench``); this package adds what needs more than the runtime:
the Keras/TensorFlow baseline (build environment), the OpenVINO EP (its own
virtual environment, because onnxruntime-openvino replaces onnxruntime),
cold start and peak RSS of fresh processes, install sizes, GEMM ceilings,
and the JSON / Markdown / PNG results.
"""
