"""Inference measurements inside another environment (the OpenVINO build of onnxruntime).

Run as a script with the repository on PYTHONPATH, so the environment needs
only onnxruntime(-openvino), numpy, pydicom and pillow::

    PYTHONPATH=<repo> <venv>/bin/python benchmarks/worker.py '<json spec>'

Spec: {"models": {"int8": path, ...}, "provider": "openvino", "threads": [1, 2],
"batches": [1, 4, 16], "smoke": false, "budget": {...Budget fields...}}.
Prints one JSON document: versions, available providers and the runs.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import onnxruntime

    from deltaiqa_lite.bench import Budget, bench_inference, make_session

    spec = json.loads(argv[0])
    budget = Budget.smoke() if spec.get("smoke") else Budget(**spec.get("budget", {}))
    runs = []
    for precision, path in spec["models"].items():
        for threads in spec["threads"]:
            session = make_session(path, spec["provider"], threads)
            for batch in spec["batches"]:
                runs.append(bench_inference(path, provider=spec["provider"], threads=threads, batch=batch,
                                            budget=budget, session=session).to_dict())
    versions = {"onnxruntime": onnxruntime.__version__}
    try:
        from importlib import metadata
        versions["onnxruntime-openvino"] = metadata.version("onnxruntime-openvino")
    except Exception:  # noqa: BLE001 - only a version label
        versions["onnxruntime-openvino"] = None
    json.dump({"versions": versions, "available_providers": onnxruntime.get_available_providers(),
               "python": sys.version.split()[0], "runs": runs}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
