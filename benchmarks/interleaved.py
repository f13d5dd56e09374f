"""Batch-1 latency of several models measured round robin, for A/B figures on a busy machine.

``python -m benchmarks.interleaved --threads 1 LABEL=MODEL.onnx [LABEL=MODEL.onnx ...]``

Each round runs every model once, so load from other processes falls on all
of them alike; the medians compare the models even where the absolute
figures are inflated. Prints one JSON line with the CPU's INT8 kernel kind.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interleaved", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="LABEL=PATH")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    from benchmarks.machine import load_average
    from deltaiqa_lite.model.cpu import cpu_info

    image = np.random.default_rng(0).random((1, 512, 512, 1)).astype(np.float32)
    sessions = {}
    for item in args.models:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item}: expected LABEL=PATH")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        sessions[label] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(3):
            sessions[label].run(["probabilities"], {"image": image})
    times: dict[str, list[float]] = {label: [] for label in sessions}
    load_before = load_average()
    for _ in range(args.rounds):
        for label, session in sessions.items():
            start = time.perf_counter()
            session.run(["probabilities"], {"image": image})
            times[label].append((time.perf_counter() - start) * 1000)
    print(json.dumps({"threads": args.threads, "rounds": args.rounds, "cpu": cpu_info().kernel(),
                      "load_average": [load_before, load_average()],
                      "p50_ms": {k: round(statistics.median(v), 1) for k, v in times.items()},
                      "min_ms": {k: round(min(v), 1) for k, v in times.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
