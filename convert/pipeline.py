"""``python -m convert all``: simulate -> train -> export -> quantize -> verify, into ``models/``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from convert.model import save_network_weights, sha256_file

FP32_NAME = "deltaiqa-fp32.onnx"
INT8_NAME = "deltaiqa-int8.onnx"
WEIGHTS_NAME = "deltaiqa.weights.h5"


def run_all(out: str | Path, *, work: str | Path = "data/build", count: int = 1200, seed: int = 0,
            preset: str = "reference", time_budget_s: float | None = None, sim_version: int = 2,
            finetune_from: str | Path | None = None, log=print) -> int:
    """Simulate (v2 by default), train or fine-tune, export, quantize, check on real anatomy, card."""
    from convert.export import export_command
    from convert.quantize import quantize_command
    from convert.train import train

    if sim_version == 2:
        from convert.simulate_v2 import simulate_dataset
    else:
        from convert.simulate import simulate_dataset
    out, work = Path(out), Path(work)
    data, run = work / f"sim-v{sim_version}", work / "train"
    if (data / "simulation.json").exists():
        log(f"all: reusing simulated data in {data}")
    else:
        simulate_dataset(data, count, seed=seed, log=log)
    if finetune_from is not None:
        from convert.finetune import finetune_command

        return finetune_command(finetune_from, data, out, seed=seed, time_budget_s=time_budget_s,
                                work=work / "finetune", log=log)
    if (run / "metrics.json").exists():
        log(f"all: reusing trained weights in {run}")
    else:
        train(data, run, preset=preset, seed=seed, time_budget_s=time_budget_s, log=log)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_network_weights(run / "best.weights.h5", weights)    # no optimizer state
    shutil.copyfile(run / "metrics.json", out / "metrics.json")
    export_command(weights, out / FP32_NAME, verify_data=None, verify_count=32, log=log)
    status = quantize_command(out / FP32_NAME, data, out / INT8_NAME, log=log)
    if status != 0:
        return status
    from convert.real_anatomy import check_command

    check_command(out, out / "metrics.json", log=log)
    write_model_card(out, log=log)
    return 0


def write_model_card(models: Path, log=print) -> Path:
    """``MODEL_CARD.md`` and ``model-card.json`` beside the models, from the ONNX cards."""
    import onnx

    from convert.card import read_card

    fp32 = read_card(onnx.load(str(models / FP32_NAME), load_external_data=False))
    int8 = read_card(onnx.load(str(models / INT8_NAME), load_external_data=False))
    files = {p.name: sha256_file(p) for p in sorted(models.iterdir())
             if p.suffix in (".onnx", ".h5") or p.name == "metrics.json"}
    metrics_file = models / "metrics.json"
    real = (json.loads(metrics_file.read_text()).get("real_anatomy") if metrics_file.exists() else None)
    real_summary = ({k: real[k] for k in ("method", "levels_hu", "summary", "outside_scope", "target")
                     if k in real} if real else None)
    (models / "model-card.json").write_text(json.dumps(
        {"fp32": fp32, "int8": int8, "real_anatomy": real_summary, "sha256": files},
        indent=1, sort_keys=True))
    from convert.card_markdown import render

    path = models / "MODEL_CARD.md"
    path.write_text(render(fp32, int8, files, real_summary))
    log(f"all: wrote {path}")
    return path
