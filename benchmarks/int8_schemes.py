"""INT8 formats onnxruntime's quantizer offers, compared for portability and speed (issue 9).

``python -m benchmarks.int8_schemes --calibration DATA --method CALIBRATION [--out DIR] [--qemu]``

One calibration (the shipped one), five formats: uint8 activations with 7-bit
int8 weights (shipped), full-range int8 weights (shipped before issue 9) or
uint8 weights; int8 (symmetric) activations with full-range or 7-bit int8
weights. For each: the saturation bound, agreement with FP32 on the validation
split (this CPU) and on examples/*.dcm (this CPU and, with ``--qemu``, an
AVX2-only Haswell emulated by ``qemu-x86_64 -cpu Haswell``, where onnxruntime
runs the saturating kernels), the u8s8 emulation without VNNI on the
validation split, and the batch-1 latency on this CPU. Writes
``int8-schemes.json`` and ``int8-schemes.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.dcm"))
# name: (activations symmetric (int8) or not (uint8), weight format of convert.quant.quantize.WEIGHT_FORMATS)
SCHEMES = {"u8s7": (False, "s7"), "u8s8": (False, "s8"), "u8u8": (False, "u8"),
           "s8s8": (True, "s8"), "s8s7": (True, "s7")}


def _agreement(reference: np.ndarray, scores: np.ndarray) -> dict:
    difference = np.abs(scores - reference)
    return {"mean": round(float(difference.mean()), 4), "max": round(float(difference.max()), 4),
            "rounded": round(float(np.mean(np.rint(scores) == np.rint(reference))), 4)}


def _example_planes() -> np.ndarray:
    from deltaiqa_lite import Scorer

    scorer = Scorer(REPO / "models" / "deltaiqa-fp32.onnx", provider="cpu")
    return np.stack([scorer._read(str(p)).planes[0] for p in EXAMPLES])[..., None]


def _haswell_scores(model: Path) -> list[float]:
    """INT8 scores of the examples under ``qemu-x86_64 -cpu Haswell`` (AVX2, FMA; no AVX-512, no VNNI)."""
    done = subprocess.run(
        [shutil.which("qemu-x86_64"), "-cpu", "Haswell", sys.executable, "-m", "deltaiqa_lite", "score",
         *map(str, EXAMPLES), "--model", str(model), "--provider", "cpu", "--threads", "1", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=1800)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "TCG doesn't support" not in line]
        raise RuntimeError("\n".join(errors[-10:]))
    by_name = {Path(s["path"]).name: s["score"] for s in json.loads(done.stdout)["slices"]}
    return [by_name[p.name] for p in EXAMPLES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_schemes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", required=True, type=Path, help="LDCTIQAC-format training folder")
    parser.add_argument("--method", required=True, help="calibration, e.g. percentile99.99 (see convert quantize)")
    parser.add_argument("--calibration-count", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--qemu", action="store_true", help="also score the examples on qemu's Haswell")
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    parser.add_argument("--emulate-count", type=int, default=40,
                        help="validation slices run through the emulation without VNNI (first N)")
    parser.add_argument("--note", default="", help="written into the results (e.g. machine load)")
    args = parser.parse_args(argv)

    from convert.quant import quantize as q
    from convert.checks.evaluation import expected_score
    from convert.quant.saturation import emulate, saturation_report
    from deltaiqa_lite.model.cpu import cpu_info

    fp32_path = REPO / "models" / "deltaiqa-fp32.onnx"
    train, val, _ = q._splits(args.calibration, None, 0)
    calibration = sorted(train, key=lambda i: (str(i.path), i.page))[:args.calibration_count]
    reader = q.SliceCalibrationReader(calibration)
    val_images, _ = q._arrays(val)
    examples = _example_planes()
    fp32 = q.cpu_session(fp32_path)
    fp32_val = expected_score(q.predict(fp32, val_images))
    fp32_examples = expected_score(q.predict(fp32, examples))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = q.preprocess_for_quantization(fp32_path, tmp / "prepared.onnx")
        for name in args.schemes:
            symmetric, weights = SCHEMES[name]
            variant = q.Variant(args.method.split("-")[0], symmetric)
            path = q.quantize_variant(prepared, tmp / f"{name}.onnx", reader, variant, weights)
            session = q.cpu_session(path)
            report = saturation_report(path)
            row = {"calibration": variant.name, "weights": weights,
                   "saturation_safe": all(layer.safe for layer in report),
                   "max_abs_weight": max(layer.max_abs_weight for layer in report),
                   "validation_here": _agreement(fp32_val, expected_score(q.predict(session, val_images))),
                   "examples_here": _agreement(fp32_examples, expected_score(q.predict(session, examples))),
                   "latency_ms_batch1_here": q.latency_ms(session, val_images[0])}
            try:  # the saturating emulation takes seconds per slice: a fixed subset
                count = args.emulate_count
                row["validation_emulated_without_vnni"] = _agreement(
                    fp32_val[:count], expected_score(emulate(path, val_images[:count], saturate=True)))
            except NotImplementedError:
                row["validation_emulated_without_vnni"] = None  # only u8s8 is emulated
            if args.qemu:
                haswell = np.array(_haswell_scores(path))
                row["examples_qemu_haswell"] = _agreement(fp32_examples, haswell)
                row["examples_qemu_haswell_scores"] = [round(float(s), 3) for s in haswell]
            rows[name] = row
            print(name, json.dumps(row), file=sys.stderr, flush=True)
    cpu = cpu_info()
    document = {"cpu": cpu.to_dict(), "note": args.note, "emulate_count": args.emulate_count, "fp32_latency_ms_batch1_here": q.latency_ms(
        fp32, val_images[0]), "fp32_example_scores": [round(float(s), 3) for s in fp32_examples],
        "examples": [p.name for p in EXAMPLES], "schemes": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8-schemes.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out / "int8-schemes.md").write_text(markdown(document))
    print(markdown(document))
    return 0


def _cell(figures: dict | None) -> str:
    if not figures:
        return "-"
    return f"{figures['mean']:.4f} / {figures['max']:.4f} / {figures['rounded']:.2f}"


def markdown(document: dict) -> str:
    cpu = document["cpu"]
    lines = ["# INT8 formats compared (issue 9)", "",
             f"- this CPU: {cpu['model']} ({cpu['int8_kernel']})",
             "- qemu Haswell: `qemu-x86_64 -cpu Haswell` (AVX2, FMA; no AVX-512, no VNNI): onnxruntime picks "
             "its saturating u8s8 kernels there. Agreement figures under qemu are exact; its timings mean "
             "nothing and are not taken.",
             f"- {document['note']}" if document["note"] else "",
             "- figures: INT8 vs FP32 expected score, mean |difference| / worst / rounded-score agreement",
             "", "| format | weights | max abs w | saturation-safe | validation, this CPU | validation, "
                 f"emulated without VNNI (first {document['emulate_count']}) | examples, this CPU | examples, qemu Haswell | ms/slice batch 1 here |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in document["schemes"].items():
        lines.append(f"| {name} | {r['weights']} | {r['max_abs_weight']} | {r['saturation_safe']} | "
                     f"{_cell(r['validation_here'])} | {_cell(r['validation_emulated_without_vnni'])} | "
                     f"{_cell(r['examples_here'])} | {_cell(r.get('examples_qemu_haswell'))} | "
                     f"{r['latency_ms_batch1_here']} |")
    lines += [f"| fp32 | - | - | - | - | - | - | - | {document['fp32_latency_ms_batch1_here']} |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
