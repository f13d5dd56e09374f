"""``python -m convert adapt``: site self-calibration on unlabelled CT, no reader scores needed.

A site has plenty of its own CT (the QA node's store, any export) but no
reader scores. The label rule (``deltaiqa_lite.physics.label_rule``) still
labels a slice once its noise is known, and noise of a known SD can be added
to any slice. So the shipped weights adapt to the site's anatomy, scanners
and kernels like this:

1. read every file with the runtime's readers (``deltaiqa_lite.read``); keep
   CT slices whose global noise level can be measured (the level the scorer
   shows: :func:`deltaiqa_lite.physics.measure_slice`, over brain tissue for a
   head); refuse, with one line, data with fewer than
   ``MIN_USABLE_SLICES`` such slices;
2. estimate the site's noise texture: the normalised radial noise power
   spectrum of flat soft-tissue patches, matched to the nearest simulator
   kernel (:func:`convert.sim.simulate_v3.nps_amplitude`: soft, standard, sharp);
3. per slice, ``samples_per_slice`` copies with noise of that spectrum
   inserted at an SD chosen so that the labels spread uniformly over 0..4;
   each copy is labelled by the rule on its *measured* global noise level;
4. split by patient (DICOM Patient ID, else the file's folder, as fine-tuning
   groups), so no slice's copies straddle train, validation and held-out
   test (:func:`convert.sim.data.split_by_group`; by file when fewer than
   three patients exist);
5. fine-tune the weights (:func:`convert.train.finetune.finetune`: best
   checkpoint on validation agreement with the rule (mean |score - label|),
   the starting weights a candidate, early stopping), then export FP32 and INT8 through the same gates as every
   build (:func:`convert.pipeline.write_adapted`), and record per-region
   agreement with the rule on the held-out slices before and after, and the
   adaptation data, in ``metrics.json`` and the model card.

The output never replaces the shipped models: a folder that holds the
starting weights, or the project's ``models/``, is refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convert.sim.data import DataError, LabelledSlice
from convert.sim.simulate_v3 import KERNELS, LABEL_LEVELS, degradation_for_label, nps_amplitude

MIN_USABLE_SLICES = 4
SAMPLES_PER_SLICE = 24
PATCH = 32
MIN_PATCHES = 8


def _region(body_part: str | None) -> str:
    from convert.card.domain import BODY_PART_REGIONS

    covered = BODY_PART_REGIONS.get((body_part or "").upper().replace(" ", ""), ())
    return covered[0] if len(covered) == 1 else ("+".join(covered) if covered else "unknown")


def radial_nps(hu: np.ndarray, soft_tissue_hu=(0.0, 150.0)) -> np.ndarray | None:
    """Normalised radial NPS (16 bins up to 0.5 cycles/pixel) of the flattest soft-tissue patches."""
    rows, cols = hu.shape[0] // PATCH, hu.shape[1] // PATCH
    patches = hu[:rows * PATCH, :cols * PATCH].reshape(rows, PATCH, cols, PATCH).swapaxes(1, 2)
    patches = patches.reshape(-1, PATCH, PATCH).astype(np.float64)
    means = patches.mean(axis=(1, 2))
    keep = patches[(means > soft_tissue_hu[0]) & (means < soft_tissue_hu[1])]
    if len(keep) < MIN_PATCHES:
        return None
    # The flattest half: least anatomy, mostly noise.
    keep = keep[np.argsort(keep.std(axis=(1, 2)))[:max(MIN_PATCHES, len(keep) // 2)]]
    y, x = np.mgrid[:PATCH, :PATCH] / (PATCH - 1.0) - 0.5
    power = np.zeros((PATCH, PATCH))
    for patch in keep:
        design = np.stack([np.ones(PATCH * PATCH), x.ravel(), y.ravel()], axis=1)
        coef, *_ = np.linalg.lstsq(design, patch.ravel(), rcond=None)
        power += np.abs(np.fft.fft2(patch - (design @ coef).reshape(PATCH, PATCH))) ** 2
    return _radial(power)


def _radial(power: np.ndarray) -> np.ndarray:
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(power.shape[0]), np.fft.fftfreq(power.shape[1]), indexing="ij"))
    bins = np.minimum((f / 0.5 * 16).astype(int), 16)
    profile = np.array([power[bins == b].mean() if np.any(bins == b) else 0.0 for b in range(16)])
    return profile / (profile.sum() + 1e-12)


def nearest_kernel(profile: np.ndarray) -> tuple[str, dict[str, float]]:
    """The simulator kernel whose NPS shape is nearest ``profile`` (L1 distance), and all distances."""
    distances = {}
    for kernel in KERNELS:
        amplitude = nps_amplitude(kernel, 1.0, 1.0, (PATCH, PATCH))
        full = np.concatenate([amplitude, amplitude[:, -2:0:-1]], axis=1) ** 2   # rfft -> fft grid
        distances[kernel] = round(float(np.abs(_radial(full) - profile).sum()), 4)
    return min(distances, key=distances.get), distances


def site_noise_hu(hu: np.ndarray, spacing, ctdi_phantom: str | None,
                  body_part: str | None) -> tuple[float | None, str | None]:
    """The global noise level the scorer shows for this slice (a head over brain tissue), and why none."""
    from deltaiqa_lite.physics import measure_slice

    found = measure_slice(hu, spacing, ctdi_phantom=ctdi_phantom, body_part=body_part).finish(None)
    return found.noise_hu, found.physics_note


class AdaptData:
    """The usable site slices: HU planes, groups, regions, native noise, and what was refused."""

    def __init__(self, paths: Sequence[str | os.PathLike], log=print):
        from convert.train.site_data import _group
        from deltaiqa_lite.errors import InputError
        from deltaiqa_lite.read import expand_paths, read_slices

        self.paths = [str(p) for p in paths]
        self.slices: list[dict] = []
        self.refused: list[str] = []
        files = expand_paths(list(paths))
        for path in files:
            try:
                items = list(read_slices(path))
            except InputError as error:
                self.refused.append(f"{error.path}: {error.reason}")
                continue
            except Exception as error:      # a reader bug must not lose the rest of the batch
                self.refused.append(f"{path}: unexpected {type(error).__name__}: {error}")
                continue
            for item in items:
                name = item.path if item.frame is None else f"{item.path}[{item.frame}]"
                if item.unit is not None:
                    self.refused.append(f"{name}: already windowed (LDCTIQAC TIFF); adaptation needs HU")
                    continue
                native, note = site_noise_hu(item.hu, item.pixel_spacing_mm, item.ctdi_phantom, item.body_part)
                if native is None:
                    self.refused.append(f"{name}: no noise level ({note})")
                    continue
                group = _group(path, item.sop_instance_uid is not None or item.series_uid is not None)
                self.slices.append({"name": name, "hu": np.asarray(item.hu, dtype=np.float32),
                                    "spacing": item.pixel_spacing_mm, "native_hu": native,
                                    "ctdi_phantom": item.ctdi_phantom, "body_part": item.body_part,
                                    "padding": item.padding,
                                    "group": group, "region": _region(item.body_part)})
        self.files = len(files)
        for line in self.refused:
            log(f"adapt: refused: {line}")
        log(f"adapt: {len(self.slices)} usable CT slices from {self.files} files "
            f"({len(self.refused)} refused)")

    def require(self, minimum: int = MIN_USABLE_SLICES) -> None:
        if len(self.slices) < minimum:
            raise DataError(f"{', '.join(self.paths)}: {len(self.slices)} usable CT slices (slices whose "
                            f"noise level can be measured); adaptation needs at least {minimum}"
                            + (f" ({len(self.refused)} inputs refused)" if self.refused else ""))

    def texture(self) -> dict:
        profiles = [p for p in (radial_nps(s["hu"]) for s in self.slices) if p is not None]
        if not profiles:
            return {"kernel": "standard", "estimated_from": 0, "distances": None,
                    "note": "no flat soft-tissue patches; the standard kernel's spectrum is used"}
        kernel, distances = nearest_kernel(np.mean(profiles, axis=0))
        return {"kernel": kernel, "estimated_from": len(profiles), "distances": distances}


def make_samples(data: AdaptData, kernel: str, samples_per_slice: int, seed: int, log=print):
    """Noisy copies of every slice, labelled by the rule on their measured global noise level.

    Returns a :class:`convert.train.site_data.SiteData` (planes in memory; groups by patient,
    series or file) and one record per copy. A copy whose noise level cannot be measured
    (very noisy ones) has no label: it is recorded with the reason and not trained on.
    """
    from convert.sim.simulate_v3 import shaped_noise
    from convert.train.site_data import SiteData
    from deltaiqa_lite.model.preprocess import prepare_hu
    from deltaiqa_lite.physics.label_rule import likert_label

    groups = {s["group"] for s in data.slices}
    by_file = len(groups) < 3
    items, names, planes, records = [], {}, {}, []
    for index, s in enumerate(data.slices):
        rng = np.random.default_rng([seed, 21, index])
        amplitude = nps_amplitude(kernel, 1.0, 1.0, s["hu"].shape)
        # Targets evenly over the 21 levels 0..4 (every level once per 21 copies), in random order.
        spread = np.round(np.linspace(0, len(LABEL_LEVELS) - 1, samples_per_slice)).astype(int)
        targets = rng.permutation(np.array(LABEL_LEVELS)[spread])
        for k, target in enumerate(targets):
            total = degradation_for_label(float(target), rng)
            inserted = math.sqrt(max(total ** 2 - s["native_hu"] ** 2, 0.0))
            noise = shaped_noise(amplitude, rng) * np.float32(inserted) if inserted > 0 else 0.0
            if inserted > 0 and s["padding"] is not None:
                # A scanner's padding (outside its field of view) stays flat however noisy the
                # image: a network must not learn to read noise there.
                noise[s["padding"]] = 0.0
            hu = s["hu"] + noise
            measured, note = site_noise_hu(hu, s["spacing"], s["ctdi_phantom"], s["body_part"])
            if measured is None:
                # Past about 100 HU few windows stay within 200 HU of the tissue range: no
                # value, so no label; the copy is recorded, not trained on.
                records.append({"slice": s["name"], "region": s["region"], "inserted_sd_hu": round(inserted, 2),
                                "measured_noise_hu": None, "label": None, "unmeasured": note})
                continue
            label = likert_label(measured)
            group = f"file {s['name']}" if by_file else s["group"]
            item = LabelledSlice(Path(s["name"]), index * 1000 + k, label, group)
            items.append(item)
            names[item] = f"{s['name']} +{inserted:.1f} HU"
            planes[item] = prepare_hu(hu)
            records.append({"slice": s["name"], "region": s["region"], "inserted_sd_hu": round(inserted, 2),
                            "measured_noise_hu": round(float(measured), 2), "label": label})
    unmeasured = len(records) - len(items)
    log(f"adapt: {len(items)} labelled copies of {len(data.slices)} slices "
        f"({samples_per_slice} per slice, {kernel} texture"
        + (f"; {unmeasured} copies without a measurable noise level left out" if unmeasured else "")
        + "), split by "
        f"{'file (fewer than 3 patients)' if by_file else 'patient'}")
    site = SiteData(source="adapt", data=data.paths, items=items, names=names, planes=planes,
                    group_by="file" if by_file else "patient (DICOM Patient ID), else the file's folder",
                    files=data.files, slices_read=len(data.slices))
    return site, records


def region_agreement(items: list[LabelledSlice], scores: np.ndarray, regions: dict) -> dict:
    """Per region: mean and worst |score - rule label| over ``items``."""
    out: dict[str, dict] = {}
    diffs = np.abs(np.asarray(scores) - np.array([i.score for i in items]))
    for region in sorted({regions[i] for i in items}):
        mask = np.array([regions[i] == region for i in items])
        out[region] = {"n": int(mask.sum()), "mean_abs_diff": round(float(diffs[mask].mean()), 3),
                       "max_abs_diff": round(float(diffs[mask].max()), 3)}
    return out


def adapt_command(data: Sequence[str | os.PathLike], output: str | os.PathLike, *,
                  models: str | os.PathLike = "models", seed: int = 0,
                  samples_per_slice: int = SAMPLES_PER_SLICE, steps: int | None = None,
                  time_budget_s: float | None = None, patience: int = 6, eval_every: int | None = None,
                  batch: int | None = None, crop: int | None = None, max_eval: int | None = None,
                  quantize: bool = True, real_anatomy: bool = True,
                  quantize_method: str = "minmax-asymmetric", log=print) -> int:
    """Adapt ``models``' weights to the unlabelled CT in ``data``; write everything into ``output``.

    Returns 0 when the FP32 and INT8 models were written, 1 when the INT8 gate rejected
    the INT8 model.

    Raises
    ------
    DataError
        Fewer than ``MIN_USABLE_SLICES`` usable CT slices, or ``output`` would overwrite
        the starting models.
    """
    import onnxruntime as ort

    from convert.pipeline import FP32_NAME, INT8_NAME, WEIGHTS_NAME, write_adapted
    from convert.train.finetune import finetune, split_site
    from deltaiqa_lite.score import likert_from_probabilities

    models, output = Path(models), Path(output)
    weights = models / WEIGHTS_NAME
    if output.resolve() == models.resolve() or (output / WEIGHTS_NAME).resolve() == weights.resolve():
        raise DataError(f"{output}: the adapted models never replace the starting ones in {models}; "
                        "choose another output folder")
    site_data = AdaptData(data, log=log)
    site_data.require()
    texture = site_data.texture()
    log(f"adapt: site noise texture nearest the simulator's {texture['kernel']} kernel "
        f"(distances {texture['distances']})")
    site, records = make_samples(site_data, texture["kernel"], samples_per_slice, seed, log=log)
    site.require(MIN_USABLE_SLICES)
    _, _, test_items = split_site(site, seed)
    regions = {item: site_data.slices[item.page // 1000]["region"] for item in site.items}

    def agreement(folder_or_file: Path) -> dict:
        session = ort.InferenceSession(str(folder_or_file), providers=["CPUExecutionProvider"])
        x, _ = site.arrays(test_items)
        probs = np.concatenate([session.run(["probabilities"], {"image": x[i:i + 8]})[0]
                                for i in range(0, len(x), 8)])
        return region_agreement(test_items, likert_from_probabilities(probs)[0], regions)

    before = {name: agreement(models / f) for name, f in (("fp32", FP32_NAME), ("int8", INT8_NAME))
              if (models / f).exists()}
    log(f"adapt: held-out agreement with the rule before: {before}")
    output.mkdir(parents=True, exist_ok=True)
    work = output / "work"
    report = finetune(weights, data, work, site=site, seed=seed, steps=steps, time_budget_s=time_budget_s,
                      patience=patience, eval_every=eval_every, batch=batch, crop=crop, max_eval=max_eval,
                      criterion="mae", log=log)
    adaptation = {
        "method": "unlabelled site CT; noise of the site's nearest simulator-kernel spectrum inserted; "
                  "labels from the rule on the measured global noise level (convert/adapt.py)",
        "data": site_data.paths, "files": site_data.files, "usable_slices": len(site_data.slices),
        "refused": len(site_data.refused), "copies": len(site.items),
        "copies_unmeasured": len(records) - len(site.items),
        "samples_per_slice": samples_per_slice, "texture": texture, "group_by": site.group_by,
        "regions": {r: sum(1 for s in site_data.slices if s["region"] == r)
                    for r in sorted({s["region"] for s in site_data.slices})},
        "held_out_copies": len(test_items),
        "held_out_agreement_before": before,
    }
    status = write_adapted(work, output, site, seed, adaptation, quantize=quantize,
                           quantize_method=quantize_method, real_anatomy=real_anatomy, log=log)
    after = {name: agreement(output / f) for name, f in (("fp32", FP32_NAME), ("int8", INT8_NAME))
             if (output / f).exists()}
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["adaptation"] = {**adaptation, "held_out_agreement_after": after, "copies_made": records}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(f"adapt: held-out agreement with the rule after: {after}")
    log(f"adapt: held-out test sum {report['before']['test']['sum']} -> {report['test']['sum']}, "
        f"MAE {report['before']['test']['mae']} -> {report['test']['mae']}")
    return status
