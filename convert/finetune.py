"""``python -m convert finetune``: adapt shipped weights to a site's own labelled slices.

A site with reader scores for 50-500 of its own slices (LDCTIQAC layout, or
the label files ``deltaiqa-lite evaluate`` reads) fine-tunes the shipped
network rather than training from scratch:

1. split the slices into train / validation / held-out test, disjoint by
   group (patient or phantom when the folder says so), reproducible for a seed;
2. score validation and test with the starting weights ("before");
3. train on random crops (then whole slices) from the starting weights with a
   low learning rate, evaluate on validation every few steps, keep the best
   checkpoint (the starting weights count as a candidate, so fine-tuning can
   never end worse than it began on validation), stop early when validation
   has not improved for ``patience`` evaluations or the time budget is spent;
4. score the held-out test split with the best weights ("after");
5. export FP32 ONNX (Keras parity gate) and INT8 (the held-out INT8 gate),
   and write a model card recording the site data's size and the metrics
   before and after.

The same command made the v2 reference weights: the v1 weights fine-tuned on
simulator v2 data (see docs/simulator.md).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convert.data import DataError, fuzzy_label, load_arrays, read_folder, split_by_group
from convert.evaluation import expected_score, quality_metrics
from convert.model import load_model, sha256_file
from convert.train import Phase, Preset, _predictor, _train_reference

FINETUNE = Preset(
    name="finetune",
    phases=(Phase(steps=600, crop=256, batch=16, lr=1e-4),
            Phase(steps=60, crop=512, batch=8, lr=1e-5)),
    weight_decay=1e-4,
    eval_every=40,
    flips=True,
    description="from the given weights: random 256x256 crops then whole 512x512 slices; AdamW with "
                "cosine decay, lr 1e-4 then 1e-5; random flips; checkpoint on best validation "
                "PLCC+SROCC+KROCC (starting weights included); early stopping",
)
MIN_SLICES = 20


def _read_site_data(data: Path) -> list:
    """The site's labelled slices: an LDCTIQAC layout (train, test or validation folder)."""
    return read_folder(data)


def finetune(weights: str | Path, data: str | Path, out: str | Path, *, seed: int = 0,
             steps: int | None = None, time_budget_s: float | None = None, patience: int = 6,
             eval_every: int | None = None, batch: int | None = None, crop: int | None = None,
             resume: bool = False, log=print) -> dict:
    """Fine-tune ``weights`` on the labelled slices in ``data``; write the best weights and a report.

    Parameters
    ----------
    weights : path
        Starting Keras weights (``.weights.h5``), usually ``models/deltaiqa.weights.h5``.
    data : path
        Labelled slices (see :func:`_read_site_data`).
    out : path
        Folder for ``deltaiqa.weights.h5`` (the best weights), ``metrics.json``,
        ``split.json``, ``history.json`` and the checkpoints.
    steps, eval_every, batch, crop : int, optional
        Override the crop phase's steps, the evaluation interval, the crop batch size and
        the crop size (smaller crops train faster; the network pools globally).
    time_budget_s : float, optional
        Stop at the first evaluation past this many seconds (checkpoints are kept).
    patience : int
        Evaluations without a better validation sum before stopping.
    resume : bool
        Start from ``out/last.weights.h5`` if it exists (same split, same seed).

    Returns
    -------
    dict
        The report written to ``out/metrics.json``.
    """
    import keras
    import tensorflow as tf

    weights, data, out = Path(weights), Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    try:
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass        # TensorFlow already running in this process (tests, notebooks): keep its setting
    items = _read_site_data(data)
    if len(items) < MIN_SLICES:
        raise DataError(f"{data}: {len(items)} labelled slices; fine-tuning needs at least {MIN_SLICES}")
    train_items, val_items, test_items = split_by_group(items, seed=seed)
    log(f"finetune: {len(train_items)} train / {len(val_items)} validation / {len(test_items)} "
        f"held-out test slices, disjoint by group")
    (out / "split.json").write_text(json.dumps({
        "seed": seed, "data": str(data), "train": [str(i.path.name) for i in train_items],
        "validation": [str(i.path.name) for i in val_items],
        "test": [str(i.path.name) for i in test_items]}, indent=1))
    x_train, s_train = load_arrays(train_items)
    x_val, s_val = load_arrays(val_items)
    x_test, s_test = load_arrays(test_items)
    y_train = np.stack([fuzzy_label(s) for s in s_train])

    model = load_model(weights)
    predict = _predictor(model)
    before = {"validation": quality_metrics(expected_score(predict(x_val)), s_val),
              "test": quality_metrics(expected_score(predict(x_test)), s_test)}
    log(f"finetune: before: validation {before['validation']}, held-out test {before['test']}")
    start_weights = out / "last.weights.h5" if resume and (out / "last.weights.h5").exists() else None
    if start_weights is not None:
        from convert.model import load_weights_h5
        load_weights_h5(model, start_weights)
        log("finetune: resumed from last.weights.h5")
    else:
        model.save_weights(out / "best.weights.h5")     # the starting point is a candidate

    crop_phase, full_phase = FINETUNE.phases
    preset = Preset(
        name=FINETUNE.name,
        phases=(Phase(steps or crop_phase.steps, crop or crop_phase.crop, batch or crop_phase.batch,
                      crop_phase.lr),
                Phase(max(1, (steps or crop_phase.steps) // 10), full_phase.crop, full_phase.batch,
                      full_phase.lr)),
        weight_decay=FINETUNE.weight_decay, eval_every=eval_every or FINETUNE.eval_every,
        flips=FINETUNE.flips,
        description=FINETUNE.description.replace("256x256", f"{crop or crop_phase.crop}x{crop or crop_phase.crop}"))
    start = time.perf_counter()
    history = _train_reference(model, predict, x_train, y_train, x_val, s_val, out, preset, seed,
                               time_budget_s, log, patience=patience,
                               initial_best=None if start_weights else before["validation"]["sum"])
    from convert.model import load_weights_h5
    load_weights_h5(model, out / "best.weights.h5")
    after = {"validation": quality_metrics(expected_score(predict(x_val)), s_val),
             "test": quality_metrics(expected_score(predict(x_test)), s_test)}
    log(f"finetune: after: validation {after['validation']}, held-out test {after['test']}")
    model.save_weights(out / "deltaiqa.weights.h5")     # network weights only, no optimizer state
    simulation = data / "simulation.json"
    report = {
        "settings": {"preset": "finetune", **asdict(preset), "patience": patience,
                     "time_budget_s": time_budget_s},
        "seed": seed,
        "data": str(data),
        "finetuned_from": {"weights": str(weights), "sha256": sha256_file(weights)},
        "site_data": {"slices": len(items), "groups": len({i.group for i in items}),
                      "label_mean": round(float(np.mean([i.score for i in items])), 3),
                      "label_sd": round(float(np.std([i.score for i in items])), 3)},
        "splits": {"train": len(train_items), "validation": len(val_items), "test": len(test_items),
                   "disjoint_by": "phantom" if simulation.exists() else "group"},
        "before": before,
        "validation": after["validation"],
        "test": after["test"],
        "seconds": round(time.perf_counter() - start, 1),
        "history": history,
    }
    if simulation.exists():
        report["simulator_version"] = json.loads(simulation.read_text())["summary"].get("version", 1)
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report


def finetune_command(weights: str | Path, data: str | Path, output: str | Path, *, seed: int = 0,
                     steps: int | None = None, time_budget_s: float | None = None, patience: int = 6,
                     resume: bool = False, quantize: bool = True, work: str | Path | None = None,
                     eval_every: int | None = None, batch: int | None = None, crop: int | None = None,
                     real_anatomy: bool = True,
                     quantize_method: str = "auto", log=print) -> int:
    """``python -m convert finetune``: fine-tune, export FP32 + INT8 with their gates, write the card.

    Returns 0 when every model was written, 1 when the INT8 gate rejected the INT8 model.
    """
    from convert.export import export_command
    from convert.pipeline import FP32_NAME, INT8_NAME, WEIGHTS_NAME, write_model_card
    from convert.quantize import quantize_command

    output = Path(output)
    work = Path(work) if work is not None else output / "work"
    output.mkdir(parents=True, exist_ok=True)
    report = finetune(weights, data, work, seed=seed, steps=steps, time_budget_s=time_budget_s,
                      patience=patience, resume=resume, eval_every=eval_every, batch=batch, crop=crop,
                      log=log)
    shutil.copyfile(work / "deltaiqa.weights.h5", output / WEIGHTS_NAME)
    shutil.copyfile(work / "metrics.json", output / "metrics.json")
    export_command(output / WEIGHTS_NAME, output / FP32_NAME, verify_data=str(data)
                   if (Path(data) / "train.json").exists() else None, verify_count=16, log=log)
    status = 0
    if quantize:
        status = quantize_command(output / FP32_NAME, data, output / INT8_NAME, method=quantize_method,
                                  log=log)
    if real_anatomy:
        from convert.real_anatomy import check_command
        check_command(output, output / "metrics.json", log=log)
    if status == 0 and (output / INT8_NAME).exists():
        write_model_card(output, log=log)
    log(f"finetune: held-out test sum {report['before']['test']['sum']} -> {report['test']['sum']}, "
        f"MAE {report['before']['test']['mae']} -> {report['test']['mae']}")
    return status
