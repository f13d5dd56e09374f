"""What this CPU can do at best through onnxruntime: GEMM microbenchmarks, and where the model's time goes.

The ceiling for a precision is the best GMAC/s of a single large matrix
product run by onnxruntime's own kernels (MLAS) on this machine, with the same
thread count as the model run it is compared with:

- FP32: ``MatMul`` of a float input by a float initializer;
- INT8: ``MatMulInteger`` (uint8 x int8 -> int32), ``QLinearMatMul``
  (uint8 x int8 -> uint8) and the QDQ form (float in, Q/DQ around MatMul,
  int8 weights), which onnxruntime fuses; all run MLAS's QGEMM, the kernel
  under the model's ``QLinearConv``.

The same files run under the OpenVINO EP too (see :mod:`benchmarks.worker`),
which uses its own kernels (oneDNN), so each EP gets its own ceiling.

Sizes: square products and the shape of conv3 lowered to a GEMM at batch 16
(rows = 16 x 30 x 30 output pixels, depth = 3 x 3 x 256, columns = 384).
The graphs are made with ``onnx.helper`` (the ``onnx`` package is a build and
test dependency, not a runtime one).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from deltaiqa_lite.engine.bench import Budget, time_calls

__all__ = [
    "GEMM_BUDGET",
    "KINDS",
    "SIZES",
    "bench_gemm",
    "best_by_precision",
    "ceilings",
    "gemm_feeds",
    "gemm_model",
    "profile_ops",
    "save_gemm_models",
    "time_gemm",
]

SIZES = {"square-1024": (1024, 1024, 1024), "square-2048": (2048, 2048, 2048),
         "conv3-as-gemm-b16": (16 * 30 * 30, 3 * 3 * 256, 384)}
SMOKE_SIZES = {"square-256": (256, 256, 256)}
GEMM_BUDGET = Budget(warmup=2, min_calls=10, min_seconds=1.0, max_seconds=8.0)
KINDS = ("fp32-matmul", "int8-matmulinteger", "int8-qlinearmatmul", "int8-qdq-matmul")


def gemm_feeds(kind: str, m: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The input ``A`` of a GEMM model of this kind (float for fp32 and QDQ, uint8 for the integer ops)."""
    rng = np.random.default_rng(seed)
    if kind in ("fp32-matmul", "int8-qdq-matmul"):
        return {"A": rng.standard_normal((m, k), dtype=np.float32)}
    return {"A": rng.integers(0, 256, (m, k), dtype=np.uint8)}


def gemm_model(kind: str, m: int, k: int, n: int, seed: int = 0):
    """An ONNX model computing one [m, k] x [k, n] product of the given kind.

    ``int8-qdq-matmul`` is the form a QDQ-quantized model carries (float in,
    QuantizeLinear/DequantizeLinear around a float MatMul, weights int8):
    onnxruntime's CPU EP fuses it into an integer GEMM, and the OpenVINO EP
    runs it as one too.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed + 1)
    scalar = lambda value, dtype, name: numpy_helper.from_array(np.array(value, dtype=dtype), name)
    if kind == "fp32-matmul":
        nodes = [helper.make_node("MatMul", ["A", "B"], ["Y"])]
        inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])]
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])]
        inits = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")]
    elif kind == "int8-qdq-matmul":
        nodes = [helper.make_node("QuantizeLinear", ["A", "a_scale", "a_zp"], ["A_q"]),
                 helper.make_node("DequantizeLinear", ["A_q", "a_scale", "a_zp"], ["A_dq"]),
                 helper.make_node("DequantizeLinear", ["B", "b_scale", "b_zp"], ["B_dq"]),
                 helper.make_node("MatMul", ["A_dq", "B_dq"], ["Y"])]
        inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])]
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])]
        inits = [numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
                 scalar(0.05, np.float32, "a_scale"), scalar(128, np.uint8, "a_zp"),
                 scalar(0.01, np.float32, "b_scale"), scalar(0, np.int8, "b_zp")]
    elif kind in ("int8-matmulinteger", "int8-qlinearmatmul"):
        inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])]
        inits = [numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "B"),
                 scalar(128, np.uint8, "a_zp"), scalar(0, np.int8, "b_zp")]
        if kind == "int8-matmulinteger":
            nodes = [helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])]
            outputs = [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])]
        else:
            inits += [scalar(0.01, np.float32, "a_scale"), scalar(0.01, np.float32, "b_scale"),
                      scalar(0.5, np.float32, "y_scale"), scalar(128, np.uint8, "y_zp")]
            nodes = [helper.make_node("QLinearMatMul", ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp",
                                                        "y_scale", "y_zp"], ["Y"])]
            outputs = [helper.make_tensor_value_info("Y", TensorProto.UINT8, [m, n])]
    else:
        raise ValueError(f"unknown GEMM kind '{kind}'; choose {', '.join(KINDS)}")
    graph = helper.make_graph(nodes, kind, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def time_gemm(session, kind: str, m: int, k: int, n: int, threads: int, budget: Budget) -> dict:
    """GMAC/s of one GEMM session (p50 of the calls)."""
    feeds = gemm_feeds(kind, m, k)
    timing = time_calls(lambda: session.run(None, feeds), budget)
    gmac = m * k * n / 1e9
    return {"kind": kind, "m": m, "k": k, "n": n, "threads": threads, "p50_ms": timing.p50_ms,
            # Sustained rate (all timed calls), as the model runs report it.
            "calls": timing.calls, "gmac": gmac, "gmac_per_s": gmac * timing.throughput,
            "providers": list(session.get_providers())}


def cpu_session(model_or_path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model_or_path if isinstance(model_or_path, (str, os.PathLike)) else model_or_path.SerializeToString()
    return onnxruntime.InferenceSession(source if isinstance(source, bytes) else str(source), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def bench_gemm(kind: str, m: int, k: int, n: int, threads: int, budget: Budget) -> dict:
    """GMAC/s of one product kind and size at ``threads`` intra-op threads on the CPU EP."""
    return time_gemm(cpu_session(gemm_model(kind, m, k, n), threads), kind, m, k, n, threads, budget)


def save_gemm_models(folder: str | os.PathLike, smoke: bool = False) -> list[dict]:
    """Write every kind x size as an .onnx file (for environments without the ``onnx`` package)."""
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (m, k, n) in (SMOKE_SIZES if smoke else SIZES).items():
        for kind in KINDS:
            path = folder / f"{kind}-{name}.onnx"
            onnx.save(gemm_model(kind, m, k, n), str(path))
            entries.append({"kind": kind, "size": name, "m": m, "k": k, "n": n, "path": str(path)})
    return entries


def best_by_precision(runs: list[dict]) -> dict:
    """Best GMAC/s per ``<precision>@<threads>`` over kinds and sizes."""
    best: dict[str, dict] = {}
    for run in runs:
        if "gmac_per_s" not in run:
            continue
        precision = run["kind"].split("-")[0]
        # Per thread count, and over any thread count: where more threads do not help (shared
        # execution units), the 1-thread figure is what the machine can do.
        for key in (f"{precision}@{run['threads']}", f"{precision}@any"):
            if key not in best or run["gmac_per_s"] > best[key]["gmac_per_s"]:
                best[key] = {"gmac_per_s": run["gmac_per_s"], "kind": run["kind"], "size": run["size"],
                             "threads": run["threads"]}
    return best


def ceilings(threads_list: list[int], smoke: bool = False) -> dict:
    """Every kind x size x thread count on the CPU EP, and the best GMAC/s per precision and thread count."""
    budget = Budget.smoke() if smoke else GEMM_BUDGET
    runs = [bench_gemm(kind, *size, threads=threads, budget=budget) | {"size": name}
            for threads in threads_list for name, size in (SMOKE_SIZES if smoke else SIZES).items()
            for kind in KINDS]
    return {"runs": runs, "best": best_by_precision(runs)}


def profile_ops(model_path: str | os.PathLike, *, threads: int, batch: int, runs: int = 5) -> dict:
    """onnxruntime's profiler on the model: time per operator type and the slowest nodes, per call."""
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="deltaiqa-profile-") as folder:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        images = np.random.default_rng(0).random((batch, 512, 512, 1), dtype=np.float32)
        session.run(["probabilities"], {"image": images})  # warm-up, excluded below
        for _ in range(runs):
            session.run(["probabilities"], {"image": images})
        trace_path = session.end_profiling()
        events = json.loads(Path(trace_path).read_text())
    # Node events: name "<node>_kernel_time", args.op_name; the first model_run is the warm-up.
    runs_seen = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                       key=lambda e: e["ts"])
    cut = runs_seen[1]["ts"] if len(runs_seen) > 1 else 0
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, tuple[str, float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < cut:
            continue
        op = event.get("args", {}).get("op_name", "?")
        by_op[op] += event["dur"]
        node = event["name"][: -len("_kernel_time")]
        by_node[node] = (op, by_node.get(node, (op, 0.0))[1] + event["dur"])
    measured = max(1, len(runs_seen) - 1)
    run_us = sum(e["dur"] for e in runs_seen[1:]) / measured if len(runs_seen) > 1 else float("nan")
    total_nodes = sum(by_op.values()) / measured
    return {
        "threads": threads, "batch": batch, "runs": measured,
        "run_ms": run_us / 1e3, "node_ms": total_nodes / 1e3,
        "by_op_ms": {op: us / measured / 1e3 for op, us in sorted(by_op.items(), key=lambda x: -x[1])},
        "top_nodes_ms": [{"node": node, "op": op, "ms": us / measured / 1e3}
                         for node, (op, us) in sorted(by_node.items(), key=lambda x: -x[1][1])[:10]],
    }
