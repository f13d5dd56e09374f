"""Inference measurements inside another environment (the OpenVINO build of onnxruntime).

Run as a script with the repository on PYTHONPATH, so the environment needs
only onnxruntime(-openvino), numpy, pydicom and pillow::

    PYTHONPATH=<repo> <venv>/bin/python benchmarks/worker.py '<json spec>'

Spec: {"models": {"int8": path, ...}, "provider": "openvino", "threads": [1, 2],
"batches": [1, 4, 16], "smoke": false, "budget": {...Budget fields...},
"gemm": [{"kind", "size", "m", "k", "n", "path"}, ...]}.
Prints one JSON document: versions, available providers, the model runs and
the GEMM runs (the EP's own ceiling; a kind the EP cannot run records why).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import onnxruntime

    from deltaiqa_lite.engine.bench import Budget, bench_inference, make_session

    spec = json.loads(argv[0])
    budget = Budget.smoke() if spec.get("smoke") else Budget(**spec.get("budget", {}))
    runs = []
    for precision, path in spec["models"].items():
        for threads in spec["threads"]:
            session = make_session(path, spec["provider"], threads)
            for batch in spec["batches"]:
                runs.append(bench_inference(path, provider=spec["provider"], threads=threads, batch=batch,
                                            budget=budget, session=session).to_dict() | {"label": precision})
    from benchmarks.ceiling import GEMM_BUDGET, best_by_precision, time_gemm

    gemm_runs = []
    for entry in spec.get("gemm", []):
        for threads in spec["threads"]:
            try:
                session = make_session(entry["path"], spec["provider"], threads)
                gemm_runs.append(time_gemm(session, entry["kind"], entry["m"], entry["k"], entry["n"], threads,
                                           Budget.smoke() if spec.get("smoke") else GEMM_BUDGET)
                                 | {"size": entry["size"]})
            except Exception as error:  # noqa: BLE001 - an op the EP lacks is a finding, not a crash
                gemm_runs.append({"kind": entry["kind"], "size": entry["size"], "threads": threads,
                                  "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"})
    versions = {"onnxruntime": onnxruntime.__version__}
    try:
        from importlib import metadata
        versions["onnxruntime-openvino"] = metadata.version("onnxruntime-openvino")
    except Exception:  # noqa: BLE001 - only a version label
        versions["onnxruntime-openvino"] = None
    json.dump({"versions": versions, "available_providers": onnxruntime.get_available_providers(),
               "python": sys.version.split()[0], "runs": runs,
               "ceiling": {"runs": gemm_runs, "best": best_by_precision(gemm_runs)}}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
