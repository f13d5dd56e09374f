"""``python -m convert finetune``: adapt shipped weights to a site's own labelled slices.

A site with reader scores for 50-500 of its own slices (LDCTIQAC layout, or
the label files ``deltaiqa-lite evaluate`` reads over its DICOM, TIFF, .npy or
PNG images, read and preprocessed by the runtime's own code:
:mod:`convert.train.site_data`) fine-tunes the shipped network rather than training
from scratch:

1. split the slices into train / validation / held-out test, disjoint by
   group (DICOM Patient ID, else the image's folder; phantom for simulated
   data), reproducible for a seed, recorded in ``split.json``;
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
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convert.sim.data import DataError, LabelledSlice, evaluation_subset, fuzzy_label, split_by_group
from convert.checks.evaluation import expected_score, quality_metrics
from convert.train.model import load_model, save_network_weights, sha256_file
from convert.train.site_data import SiteData, read_site_data
from convert.train.train import Phase, Preset, _predictor, _train_reference

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


Split = tuple[list[LabelledSlice], list[LabelledSlice], list[LabelledSlice]]


def load_site(data: str | os.PathLike | Sequence[str | os.PathLike],
              labels: str | os.PathLike | None = None, *,
              image_window: tuple[float, float] | None = None, log=print) -> SiteData:
    """Read the site's labelled slices, report every left-out item, refuse too few.

    Raises
    ------
    DataError
        Fewer than ``MIN_SLICES`` usable labelled slices (one line, with the counts).
    """
    site = read_site_data(data, labels, image_window=image_window)
    for line in site.report_lines():
        log(f"finetune: {line}")
    log(f"finetune: {len(site.items)} labelled slices from {site.slices_read} read "
        f"({site.source}; {len(site.refused)} refused, {len(site.unlabelled)} unlabelled, "
        f"{len(site.unused)} unused labels)")
    site.require(MIN_SLICES)
    return site


def split_site(site: SiteData, seed: int) -> Split:
    """Train / validation / held-out test, disjoint by group; refuses when a split would be empty."""
    train_items, val_items, test_items = split_by_group(site.items, seed=seed)
    if not (train_items and val_items and test_items):
        groups = len({item.group for item in site.items})
        raise DataError(f"{site.labels or ', '.join(site.data)}: {groups} group(s) by "
                        f"{site.group_by}; a disjoint train / validation / test split needs at least 3")
    return train_items, val_items, test_items


def split_record(site: SiteData, split: Split, seed: int) -> dict:
    """``split.json``: which slice went where, and the groups of each split."""
    record: dict = {"seed": seed, "data": site.data[0] if len(site.data) == 1 else site.data,
                    "labels": site.labels, "group_by": site.group_by}
    for part, items in zip(("train", "validation", "test"), split):
        record[part] = [site.name(item) for item in items]
    record["groups"] = {part: sorted({item.group for item in items})
                        for part, items in zip(("train", "validation", "test"), split)}
    return record


def finetune(weights: str | Path, data: str | os.PathLike | Sequence[str | os.PathLike],
             out: str | Path, *, labels: str | os.PathLike | None = None,
             image_window: tuple[float, float] | None = None, site: SiteData | None = None,
             seed: int = 0, steps: int | None = None, time_budget_s: float | None = None,
             patience: int = 6, eval_every: int | None = None, batch: int | None = None,
             crop: int | None = None, resume: bool = False, max_eval: int | None = None,
             criterion: str = "sum", log=print) -> dict:
    """Fine-tune ``weights`` on the labelled slices in ``data``; write the best weights and a report.

    Parameters
    ----------
    weights : path
        Starting Keras weights (``.weights.h5``), usually ``models/deltaiqa.weights.h5``.
    data : path or sequence of paths
        An LDCTIQAC layout folder, or (with ``labels``) the image files and folders
        the label file names (see :mod:`convert.train.site_data`).
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
    criterion : str
        Validation figure the checkpoint is chosen on: ``"sum"`` (PLCC+SROCC+KROCC) or
        ``"mae"`` (agreement with the labels; ``convert adapt``).
    max_eval : int, optional
        Score at most this many validation and held-out test slices (a fixed random
        subset of each split; large simulated sets). Training images are held as
        float16 (half the memory; crops go back to float32).
    labels : path, optional
        Label file as ``deltaiqa-lite evaluate --labels`` reads it (LDCTIQAC JSON or CSV).
    image_window : (centre, width) in HU, optional
        Window of plain images (PNG ...) in ``data``.
    site : SiteData, optional
        The site data already read by :func:`load_site` (``data`` and ``labels`` are then ignored).

    Returns
    -------
    dict
        The report written to ``out/metrics.json``.
    """
    # The data first: a site with too few usable slices hears so before TensorFlow starts.
    if site is None:
        site = load_site(data, labels, image_window=image_window, log=log)
    else:
        site.require(MIN_SLICES)
    items = site.items
    train_items, val_items, test_items = split = split_site(site, seed)

    import keras
    import tensorflow as tf

    weights, out = Path(weights), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    try:
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass        # TensorFlow already running in this process (tests, notebooks): keep its setting
    log(f"finetune: {len(train_items)} train / {len(val_items)} validation / {len(test_items)} "
        f"held-out test slices, disjoint by {site.group_by}")
    (out / "split.json").write_text(json.dumps(split_record(site, split, seed), indent=1))
    val_eval, test_eval = evaluation_subset(val_items, max_eval, seed), evaluation_subset(test_items, max_eval, seed)
    if max_eval is not None:
        log(f"finetune: scoring {len(val_eval)} of {len(val_items)} validation and {len(test_eval)} of "
            f"{len(test_items)} held-out test slices (fixed random subsets)")
    x_train, s_train = site.arrays(train_items, dtype=np.float16)
    x_val, s_val = site.arrays(val_eval)
    x_test, s_test = site.arrays(test_eval)
    y_train = np.stack([fuzzy_label(s) for s in s_train])

    model = load_model(weights)
    predict = _predictor(model)
    before = {"validation": quality_metrics(expected_score(predict(x_val)), s_val),
              "test": quality_metrics(expected_score(predict(x_test)), s_test)}
    log(f"finetune: before: validation {before['validation']}, held-out test {before['test']}")
    start_weights = out / "last.weights.h5" if resume and (out / "last.weights.h5").exists() else None
    if start_weights is not None:
        from convert.train.model import load_weights_h5
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
                               initial_best=None if start_weights else before["validation"][criterion],
                               criterion=criterion)
    from convert.train.model import load_weights_h5
    load_weights_h5(model, out / "best.weights.h5")
    after = {"validation": quality_metrics(expected_score(predict(x_val)), s_val),
             "test": quality_metrics(expected_score(predict(x_test)), s_test)}
    log(f"finetune: after: validation {after['validation']}, held-out test {after['test']}")
    # The training model holds AdamW's state too (3x the size); keep the network's weights only.
    save_network_weights(out / "best.weights.h5", out / "deltaiqa.weights.h5")
    simulation = site.folder / "simulation.json" if site.folder is not None else None
    simulated = simulation is not None and simulation.exists()
    report = {
        "settings": {"preset": "finetune", **asdict(preset), "patience": patience, "criterion": criterion,
                     "time_budget_s": time_budget_s},
        "seed": seed,
        "data": site.data[0] if len(site.data) == 1 else site.data,
        "finetuned_from": {"weights": str(weights), "sha256": sha256_file(weights)},
        "site_data": {"slices": len(items), "groups": len({i.group for i in items}),
                      "label_mean": round(float(np.mean([i.score for i in items])), 3),
                      "label_sd": round(float(np.std([i.score for i in items])), 3),
                      **site.record()},
        "splits": {"train": len(train_items), "validation": len(val_items), "test": len(test_items),
                   "disjoint_by": "phantom" if simulated else site.group_by,
                   **({"scored": {"validation": len(val_eval), "test": len(test_eval)}}
                      if max_eval is not None else {})},
        "before": before,
        "validation": after["validation"],
        "test": after["test"],
        "seconds": round(time.perf_counter() - start, 1),
        "history": history,
    }
    if simulated:
        report["simulator_version"] = json.loads(simulation.read_text())["summary"].get("version", 1)
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report
