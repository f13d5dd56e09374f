"""The chained build steps: ``convert all`` (simulate -> train -> export -> quantize -> verify) and
``convert finetune`` (fine-tune -> export -> quantize -> verify), each into a models folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from convert.train.model import save_network_weights, sha256_file

FP32_NAME = "deltaiqa-fp32.onnx"
INT8_NAME = "deltaiqa-int8.onnx"
WEIGHTS_NAME = "deltaiqa.weights.h5"


def run_all(out: str | Path, *, work: str | Path = "data/build", count: int = 12800, seed: int = 0,
            preset: str = "reference", time_budget_s: float | None = None, sim_version: int = 3,
            finetune_from: str | Path | None = None, finetune_options: dict | None = None,
            workers: int | None = None, log=print) -> int:
    """Simulate (v3 by default), train or fine-tune, export, quantize, check on real anatomy, card.

    ``finetune_options`` go to :func:`finetune_command` (steps, patience, eval_every,
    max_eval, quantize_method ...); from scratch, ``max_eval`` and ``quantize_method``
    go to the INT8 step. A v3 data set must pass the label balance gate
    (:func:`convert.sim.simulate_v3.require_balanced`) before any training.
    """
    from convert.quant.export import export_command
    from convert.quant.quantize import quantize_command
    from convert.train.train import train

    if sim_version == 3:
        from convert.sim.simulate_v3 import simulate_dataset
    elif sim_version == 2:
        from convert.sim.simulate_v2 import simulate_dataset
    else:
        from convert.sim.simulate import simulate_dataset
    out, work = Path(out), Path(work)
    data, run = work / f"sim-v{sim_version}", work / "train"
    if (data / "simulation.json").exists():
        log(f"all: reusing simulated data in {data}")
    else:
        simulate_dataset(data, count, seed=seed, workers=workers, log=log)
    if sim_version == 3:
        from convert.sim.simulate_v3 import require_balanced
        require_balanced(data)
    if finetune_from is not None:
        return finetune_command(finetune_from, data, out, seed=seed, time_budget_s=time_budget_s,
                                work=work / "finetune", log=log, **(finetune_options or {}))
    if (run / "metrics.json").exists():
        log(f"all: reusing trained weights in {run}")
    else:
        train(data, run, preset=preset, seed=seed, time_budget_s=time_budget_s, log=log)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_network_weights(run / "best.weights.h5", weights)    # no optimizer state
    shutil.copyfile(run / "metrics.json", out / "metrics.json")
    export_command(weights, out / FP32_NAME, verify_data=None, verify_count=32, log=log)
    options = finetune_options or {}
    status = quantize_command(out / FP32_NAME, data, out / INT8_NAME, max_eval=options.get("max_eval"),
                              method=options.get("quantize_method", "auto"), log=log)
    if status != 0:
        return status
    from convert.checks.real_anatomy import check_command

    check_command(out, out / "metrics.json", log=log)
    write_model_card(out, log=log)
    return 0


def write_model_card(models: Path, log=print) -> Path:
    """``MODEL_CARD.md`` and ``model-card.json`` beside the models, from the ONNX cards."""
    import onnx

    from convert.card.card import read_card

    fp32 = read_card(onnx.load(str(models / FP32_NAME), load_external_data=False))
    int8 = read_card(onnx.load(str(models / INT8_NAME), load_external_data=False))
    files = {p.name: sha256_file(p) for p in sorted(models.iterdir())
             if p.suffix in (".onnx", ".h5") or p.name == "metrics.json"}
    metrics_file = models / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    real = metrics.get("real_anatomy")
    by_region = metrics.get("test_by_region")
    real_summary = ({k: real[k] for k in ("method", "levels_hu", "summary", "outside_scope", "target")
                     if k in real} if real else None)
    if real_summary is not None and real.get("v2"):
        real_summary["v2"] = {k: v for k, v in real["v2"].items() if k != "slices"}
    (models / "model-card.json").write_text(json.dumps(
        {"fp32": fp32, "int8": int8, "real_anatomy": real_summary, "test_by_region": by_region,
         "sha256": files},
        indent=1, sort_keys=True))
    from convert.card.markdown import render

    path = models / "MODEL_CARD.md"
    path.write_text(render(fp32, int8, files, real_summary, by_region))
    log(f"all: wrote {path}")
    return path


def _quantize_site(fp32: Path, site, seed: int, output: Path, *, method: str,
                   calibration_count: int = 128, log=print) -> int:
    """INT8 from the site's own split (label-file form): calibration on train, gates on val / test.

    The planes are the ones fine-tuning used (the runtime's preprocessing); the
    split is the fine-tuning split, so the INT8 gate is judged on the same
    held-out slices as the FP32 figures.
    """
    from convert.quant.quantize import QuantizationGateError, calibration_subset, quantize_model
    from convert.train.finetune import split_site

    train_items, val_items, test_items = split_site(site, seed)
    calibration = calibration_subset(train_items, calibration_count, len(val_items), len(test_items), log)
    try:
        quantize_model(fp32, site.arrays(calibration)[0], site.arrays(val_items), site.arrays(test_items),
                       output, method=method, compare=method == "auto", log=log)
    except QuantizationGateError as exc:
        log(f"quantize: rejected: {exc}")
        return 1
    return 0


def write_adapted(work: Path, output: Path, site, seed: int, adaptation: dict, *, quantize: bool = True,
                  quantize_method: str = "minmax-asymmetric", real_anatomy: bool = True, log=print) -> int:
    """FP32 and INT8 of adapted weights (``work``) into ``output``, through the gates of every build.

    The same steps as :func:`finetune_command` after training: Keras/ONNX parity,
    the INT8 gates on the site's own split (:func:`_quantize_site`), the real-anatomy
    check, the card, with ``adaptation`` (what the weights adapted to) in the card.
    Returns 0, or 1 when the INT8 gate rejected the INT8 model.
    """
    import tempfile

    from convert.quant.export import export_command

    shutil.copyfile(work / "deltaiqa.weights.h5", output / WEIGHTS_NAME)
    shutil.copyfile(work / "metrics.json", output / "metrics.json")
    card = {key: adaptation[key] for key in ("method", "files", "usable_slices", "refused", "copies",
                                             "samples_per_slice", "texture", "group_by", "regions")}
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "adaptation.json"
        extra.write_text(json.dumps({"adaptation": card}))
        export_command(output / WEIGHTS_NAME, output / FP32_NAME, verify_data=None, verify_count=8,
                       card_extra=str(extra), log=log)
    status = _quantize_site(output / FP32_NAME, site, seed, output / INT8_NAME,
                            method=quantize_method, log=log) if quantize else 0
    if real_anatomy:
        from convert.checks.real_anatomy import check_command
        check_command(output, output / "metrics.json", log=log)
    if status == 0 and (output / INT8_NAME).exists():
        write_model_card(output, log=log)
    return status


def finetune_command(weights: str | Path, data: str | os.PathLike | Sequence[str | os.PathLike],
                     output: str | Path, *, labels: str | os.PathLike | None = None,
                     image_window: tuple[float, float] | None = None, seed: int = 0,
                     steps: int | None = None, time_budget_s: float | None = None, patience: int = 6,
                     resume: bool = False, quantize: bool = True, work: str | Path | None = None,
                     eval_every: int | None = None, batch: int | None = None, crop: int | None = None,
                     real_anatomy: bool = True, max_eval: int | None = None,
                     quantize_method: str = "auto", log=print) -> int:
    """``python -m convert finetune``: fine-tune, export FP32 + INT8 with their gates, write the card.

    ``data`` is an LDCTIQAC layout folder, or with ``labels`` the images a label
    file names (see :func:`finetune`).

    Returns 0 when every model was written, 1 when the INT8 gate rejected the INT8 model.

    Raises
    ------
    DataError
        Too few usable labelled slices, or too few groups for a disjoint split.
    deltaiqa_lite.validate.labels.LabelError
        The label file cannot be read.
    """
    from convert.train.finetune import load_site, split_site

    site = load_site(data, labels, image_window=image_window, log=log)

    split_site(site, seed)      # refuse a split with an empty part before any work

    from convert.quant.export import export_command
    from convert.quant.quantize import quantize_command
    from convert.train.finetune import finetune

    output = Path(output)
    work = Path(work) if work is not None else output / "work"
    output.mkdir(parents=True, exist_ok=True)
    report = finetune(weights, data, work, site=site, seed=seed, steps=steps,
                      time_budget_s=time_budget_s, patience=patience, resume=resume,
                      eval_every=eval_every, batch=batch, crop=crop, max_eval=max_eval, log=log)
    shutil.copyfile(work / "deltaiqa.weights.h5", output / WEIGHTS_NAME)
    shutil.copyfile(work / "metrics.json", output / "metrics.json")
    folder = site.folder if site.source == "ldctiqac-folder" else None
    export_command(output / WEIGHTS_NAME, output / FP32_NAME, verify_data=str(folder)
                   if folder is not None and (folder / "train.json").exists() else None,
                   verify_count=16, log=log)
    status = 0
    if quantize:
        if folder is not None:
            status = quantize_command(output / FP32_NAME, folder, output / INT8_NAME,
                                      method=quantize_method, max_eval=max_eval, log=log)
        else:
            status = _quantize_site(output / FP32_NAME, site, seed, output / INT8_NAME,
                                    method=quantize_method, log=log)
    if real_anatomy:
        from convert.checks.real_anatomy import check_command
        check_command(output, output / "metrics.json", log=log)
    if status == 0 and (output / INT8_NAME).exists():
        write_model_card(output, log=log)
    log(f"finetune: held-out test sum {report['before']['test']['sum']} -> {report['test']['sum']}, "
        f"MAE {report['before']['test']['mae']} -> {report['test']['mae']}")
    return status
