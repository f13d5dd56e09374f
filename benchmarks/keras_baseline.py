"""The Keras original as the baseline: run with the build environment's Python (TensorFlow present).

    python -m benchmarks.keras_baseline latency WEIGHTS --batch 1 16 [--smoke]
    python -m benchmarks.keras_baseline coldstart WEIGHTS SLICE.dcm
    python -m benchmarks.keras_baseline random-weights OUT.weights.h5

``latency`` prints one JSON document: ``model.predict`` and ``tf.function``
timings per batch size (same warm-up and budget rules as the runtime's
measurements, :mod:`deltaiqa_lite.engine.bench`), and the probabilities of a seeded
input so the suite can check that Keras and the FP32 ONNX model carry the same
weights. ``coldstart`` is what a Keras user's script does for one slice:
import TensorFlow, build the model, load the weights, read and prepare the
DICOM with the same preprocessing, predict, print the score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

_STARTED = time.perf_counter()


def _latency(args: argparse.Namespace) -> dict:
    import numpy as np
    import tensorflow as tf

    from convert.train.model import load_model
    from deltaiqa_lite.engine.bench import Budget, cpu_count, time_calls

    budget = Budget.smoke() if args.smoke else Budget(min_seconds=args.seconds, max_seconds=args.max_seconds)
    model = load_model(args.weights)
    infer = tf.function(lambda x: model(x, training=False))
    rng = np.random.default_rng(0)
    runs = []
    for batch in args.batch:
        images = rng.random((batch, 512, 512, 1), dtype=np.float32)
        tensor = tf.constant(images)
        predict = time_calls(lambda images=images, batch=batch: model.predict(images, batch_size=batch, verbose=0),
                             budget, batch)
        # .numpy() waits for the result, so the timing covers the whole computation.
        function = time_calls(lambda tensor=tensor: infer(tensor).numpy(), budget, batch)
        for mode, timing in (("model.predict", predict), ("tf.function", function)):
            runs.append({"mode": mode, "batch": batch, "timing": timing.__dict__, "per_slice": timing.per_item(),
                         "slices_per_s": timing.throughput})
    probe = np.random.default_rng(123).random((2, 512, 512, 1), dtype=np.float32)
    return {"tensorflow": tf.__version__, "keras": __import__("keras").__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or cpu_count(),
            "weights": args.weights, "runs": runs,
            "probe_probabilities": model.predict(probe, verbose=0).astype(float).tolist()}


def _coldstart(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorflow  # noqa: F401  (timed on purpose: it is what a Keras user pays)

    from convert.train.model import load_model
    from deltaiqa_lite.model.preprocess import Preprocessing
    from deltaiqa_lite.read import read_slices
    from deltaiqa_lite.score import prepare_slice

    model = load_model(args.weights)
    item = next(read_slices(args.dicom))
    plane = prepare_slice(item, Preprocessing())
    probabilities = model.predict(plane[None, :, :, None], verbose=0)[0]
    score = float(np.dot(probabilities, np.arange(5)))
    print(json.dumps({"path": args.dicom, "score": score, "seconds_in_process": time.perf_counter() - _STARTED}),
          flush=True)


def _random_weights(args: argparse.Namespace) -> None:
    from convert.train.model import build_delta_iqa

    build_delta_iqa(seed=0).save_weights(args.out)
    print(args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keras_baseline")
    modes = parser.add_subparsers(dest="mode", required=True)
    latency = modes.add_parser("latency")
    latency.add_argument("weights")
    latency.add_argument("--batch", nargs="+", type=int, default=[1, 16])
    latency.add_argument("--smoke", action="store_true")
    latency.add_argument("--seconds", type=float, default=3.0)
    latency.add_argument("--max-seconds", type=float, default=20.0)
    cold = modes.add_parser("coldstart")
    cold.add_argument("weights")
    cold.add_argument("dicom")
    random_weights = modes.add_parser("random-weights")
    random_weights.add_argument("out")
    args = parser.parse_args(argv)
    if args.mode == "latency":
        json.dump(_latency(args), sys.stdout)
        sys.stdout.write("\n")
    elif args.mode == "coldstart":
        _coldstart(args)
    else:
        _random_weights(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
