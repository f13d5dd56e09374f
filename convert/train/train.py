"""Training Delta-IQA on an LDCTIQAC-format folder.

Two presets:

``original``
    The original recipe (DESIGN.md section 1): full 512x512 slices, batch 128,
    AdamW lr 1e-5 and weight decay 1e-3, up to 80 epochs, early stopping on
    validation loss (patience 20), checkpoint on the best validation
    categorical accuracy, and the training set extended with one rotated
    (+-15 degrees), one translated (+-10 px) and one rotated-and-translated copy
    of every image, zero fill.

``reference``
    What ships: the same network, loss and fuzzy labels, made to finish in
    about an hour on two CPU cores. The network ends in global average
    pooling, so it trains on random 256x256 crops (most steps) and then
    fine-tunes on whole 512x512 slices so its pooled features see the whole
    field of view, as at inference. AdamW with a higher learning rate and a
    cosine schedule; random flips (image quality does not depend on
    orientation); checkpoint on the best validation PLCC+SROCC+KROCC at 512.
    Steps, not wall time, define the preset, so a run is reproducible.

Splits are disjoint by phantom (patient) when the folder says which slice
comes from which (``simulation.json``); otherwise every slice is its own group.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.sim.data import (evaluation_subset, fuzzy_label, load_arrays, read_folder, regions_of,
                              split_by_group)
from convert.checks.evaluation import agreement_by_region, expected_score, quality_metrics
from convert.train.model import build_delta_iqa, load_weights_h5


@dataclass(frozen=True)
class Phase:
    steps: int
    crop: int
    batch: int
    lr: float


@dataclass(frozen=True)
class Preset:
    name: str
    phases: tuple[Phase, ...]
    weight_decay: float
    eval_every: int
    flips: bool
    description: str
    eval_max: int | None = None     # validation during training on at most this many slices


REFERENCE = Preset(
    name="reference",
    phases=(Phase(steps=2400, crop=256, batch=24, lr=3e-4),
            Phase(steps=240, crop=512, batch=8, lr=3e-5)),
    weight_decay=1e-4,
    eval_every=120,
    flips=True,
    description="random 256x256 crops then whole 512x512 slices; AdamW with cosine decay; "
                "random flips; checkpoint on best validation PLCC+SROCC+KROCC (during training on a "
                "fixed random subset of at most eval_max validation slices)",
    eval_max=400,
)


def train(data: str | Path, out: str | Path, *, preset: str = "reference", seed: int = 0,
          epochs: int | None = None, time_budget_s: float | None = None, resume: bool = False,
          log=print) -> dict:
    """Train, keep the best checkpoint, and report metrics on the held-out test split."""
    import keras
    import tensorflow as tf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    tf.config.threading.set_inter_op_parallelism_threads(2)

    items = read_folder(data)
    train_items, val_items, test_items = split_by_group(items, seed=seed)
    log(f"train: {len(train_items)} train / {len(val_items)} validation / {len(test_items)} test "
        f"slices, disjoint by group")
    (out / "split.json").write_text(json.dumps({
        "seed": seed, "data": str(data),
        "train": [i.path.name for i in train_items], "validation": [i.path.name for i in val_items],
        "test": [i.path.name for i in test_items]}, indent=1))
    x_train, s_train = load_arrays(train_items)
    x_val, s_val = load_arrays(val_items)
    x_test, s_test = load_arrays(test_items)
    y_train = np.stack([fuzzy_label(s) for s in s_train])
    y_val = np.stack([fuzzy_label(s) for s in s_val])

    model = build_delta_iqa(seed=seed)
    predict = _predictor(model)   # traced once; sees the weights as they change
    if resume and (out / "last.weights.h5").exists():
        load_weights_h5(model, out / "last.weights.h5")
        log("train: resumed from last.weights.h5")

    if preset == "original":
        history = _train_original(model, x_train, y_train, x_val, y_val, out, epochs or 80,
                                  seed, time_budget_s, log)
        settings = {"preset": "original", "epochs": epochs or 80}
    elif preset == "reference":
        pick = np.array(evaluation_subset(list(range(len(x_val))), REFERENCE.eval_max, seed))
        if len(pick) < len(x_val):
            log(f"train: validating during training on {len(pick)} of {len(x_val)} validation slices "
                f"(a fixed random subset); the final figures use all of them")
        history = _train_reference(model, predict, x_train, y_train, x_val[pick], s_val[pick], out,
                                   REFERENCE, seed, time_budget_s, log)
        settings = {"preset": "reference", **asdict(REFERENCE)}
    else:
        raise ValueError(f"unknown preset {preset!r}; choose reference or original")

    load_weights_h5(model, out / "best.weights.h5")
    test_probs = predict(x_test)
    val_probs = predict(x_val)
    report = {
        "settings": settings,
        "seed": seed,
        "data": str(data),
        "splits": {"train": len(train_items), "validation": len(val_items), "test": len(test_items),
                   "disjoint_by": "phantom" if (Path(data) / "simulation.json").exists() else "slice"},
        "validation": quality_metrics(expected_score(val_probs), s_val),
        "test": quality_metrics(expected_score(test_probs), s_test),
        "history": history,
    }
    regions = regions_of(test_items, data)
    if regions is not None:
        report["test_by_region"] = agreement_by_region(expected_score(test_probs), s_test, regions)
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    log(f"train: held-out test {report['test']}")
    return report


def _predictor(model, batch: int = 8):
    """Inference at 512x512 through one traced function (``keras_forward``), reused for every call."""
    from convert.train.model import keras_forward

    forward = keras_forward(model)

    def predict(images: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(images[i:i + batch])["probabilities"].numpy()
                               for i in range(0, len(images), batch)])

    return predict


def _random_crops(images: np.ndarray, index: np.ndarray, crop: int, flips: bool,
                  rng: np.random.Generator) -> np.ndarray:
    """Crops that mostly cover the patient (air-only crops carry little signal)."""
    size = images.shape[1]
    batch = np.empty((len(index), crop, crop, 1), dtype=np.float32)
    for n, i in enumerate(index):
        for _ in range(6):
            top, left = rng.integers(0, size - crop + 1, size=2)
            patch = images[i, top:top + crop, left:left + crop]
            if np.mean(patch > 0.3) > 0.5:
                break
        if flips:
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1, :]
        batch[n] = patch
    return batch


def _train_reference(model, predict, x_train, y_train, x_val, s_val, out: Path, preset: Preset, seed: int,
                     time_budget_s: float | None, log, *, patience: int | None = None,
                     initial_best: float | None = None, criterion: str = "sum") -> list[dict]:
    """Steps of ``preset``; checkpoint on the best validation ``criterion``.

    ``criterion`` is ``"sum"`` (PLCC+SROCC+KROCC, higher is better) or ``"mae"``
    (mean |score - label|, lower is better: agreement with the label, what
    ``convert adapt`` selects on). ``initial_best`` is the criterion of the
    weights the model starts from (fine-tuning): a checkpoint must beat it.
    ``patience`` stops after that many evaluations without a better value
    (early stopping).
    """
    import keras

    rng = np.random.default_rng(seed)
    optimizer = keras.optimizers.AdamW(learning_rate=preset.phases[0].lr,
                                       weight_decay=preset.weight_decay)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    history: list[dict] = []
    sign = {"sum": 1.0, "mae": -1.0}[criterion]
    best = -math.inf if initial_best is None else sign * initial_best
    since_best = 0
    start = time.perf_counter()
    step = 0
    losses: list[float] = []
    for phase_index, phase in enumerate(preset.phases):
        for phase_step in range(phase.steps):
            lr = phase.lr * 0.5 * (1 + math.cos(math.pi * phase_step / phase.steps))
            optimizer.learning_rate.assign(lr)
            index = rng.integers(0, len(x_train), size=phase.batch)
            batch = _random_crops(x_train, index, phase.crop, preset.flips, rng)
            losses.append(float(model.train_on_batch(batch, y_train[index])))
            step += 1
            last_of_phase = phase_step == phase.steps - 1
            if step % preset.eval_every == 0 or last_of_phase:
                val = quality_metrics(expected_score(predict(x_val)), s_val)
                elapsed = time.perf_counter() - start
                entry = {"step": step, "phase": phase_index, "lr": lr,
                         "train_loss": round(float(np.mean(losses)), 4), "seconds": round(elapsed),
                         **{f"val_{k}": v for k, v in val.items() if k != "n"}}
                history.append(entry)
                losses = []
                model.save_weights(out / "last.weights.h5")
                if sign * val[criterion] > best:
                    best = sign * val[criterion]
                    model.save_weights(out / "best.weights.h5")
                    entry["best"] = True
                    since_best = 0
                else:
                    since_best += 1
                log(f"train: {json.dumps(entry)}")
                (out / "history.json").write_text(json.dumps(history, indent=1))
                if time_budget_s is not None and elapsed > time_budget_s:
                    log(f"train: time budget of {time_budget_s:.0f} s reached at step {step}")
                    return history
                if patience is not None and since_best >= patience:
                    log(f"train: early stop at step {step}: no better validation sum in "
                        f"{patience} evaluations")
                    return history
    return history


def _augment_original(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One rotated, one translated and one rotated+translated copy per image, zero fill."""
    from scipy import ndimage

    copies = [images]
    for mode in ("rotate", "translate", "both"):
        batch = np.empty_like(images)
        for i, image in enumerate(images[..., 0]):
            out = image
            if mode in ("rotate", "both"):
                out = ndimage.rotate(out, rng.uniform(-15, 15), reshape=False, order=1, cval=0.0)
            if mode in ("translate", "both"):
                out = ndimage.shift(out, rng.uniform(-10, 10, size=2), order=1, cval=0.0)
            batch[i, ..., 0] = out
        copies.append(batch)
    return np.concatenate(copies)


def _train_original(model, x_train, y_train, x_val, y_val, out: Path, epochs: int, seed: int,
                    time_budget_s: float | None, log) -> list[dict]:
    import keras

    rng = np.random.default_rng(seed)
    x_aug = _augment_original(x_train, rng)
    y_aug = np.concatenate([y_train] * 4)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-5, weight_decay=1e-3),
                  loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=20),
        keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), save_weights_only=True,
                                        monitor="val_categorical_accuracy", save_best_only=True),
        keras.callbacks.ModelCheckpoint(str(out / "last.weights.h5"), save_weights_only=True),
    ]
    if time_budget_s is not None:
        start = time.perf_counter()

        def stop_after_budget(epoch, logs=None):
            if time.perf_counter() - start > time_budget_s:
                log(f"train: time budget of {time_budget_s:.0f} s reached after epoch {epoch + 1}")
                model.stop_training = True

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=stop_after_budget))
    fit = model.fit(x_aug, y_aug, batch_size=128, epochs=epochs, validation_data=(x_val, y_val),
                    callbacks=callbacks, shuffle=True, verbose=2)
    return [dict(epoch=i, **{k: float(v[i]) for k, v in fit.history.items()})
            for i in range(len(fit.history["loss"]))]
