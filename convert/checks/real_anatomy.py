"""Build-time check on real anatomy: real CT slices with CT-like noise inserted at known levels.

The simulator cannot check itself: a network that learnt the simulator's
anatomy scores the simulator's slices well. This check uses real scanner
slices from public DICOM test data (pydicom's bundled files and the
``pydicom-data`` package: head, neck, abdomen), never used for training:

1. read each slice with the runtime's DICOM reader (HU, display orientation);
2. estimate its native noise as the global noise level (GNL, Christianson et
   al. 2015): the mode of the local-SD map over soft tissue (0-100 HU);
3. insert noise with the spectrum of filtered back-projection (NPS rising
   with frequency: ramp times a Hann window) at known SDs
   (``INSERTED_SD_HU``); the field is stationary, so the inserted SD is exact;
4. compare the network's score with the label rule
   (``deltaiqa_lite.physics.label_rule.continuous_score``) applied to the measured
   noise ``sqrt(native^2 + inserted^2)``.

Version 2 (issue 21) inserts three noise textures, the noise power spectra of
the simulator's three kernels (``TEXTURES``: smooth, standard, sharp; see
:func:`convert.sim.simulate_v3.nps_amplitude`), and gates per body region:

- per region and model (FP32, INT8): mean |score - rule| <= 0.25 and worst
  <= 0.6 over the region's slices, textures and levels (``TARGET``);
- shortcut probe: on every slice and texture, the least-squares slope of the
  score against the rule's value over the inserted levels lies within
  0.75-1.25 (``PROBE_SLOPE``). A network that reads the anatomy instead of the
  noise has a flat slope (its score hardly moves as noise is added) or an
  offset the per-region gate catches.

Regions without a public slice (chest and pelvis today) are named in the
result, not passed. These public slices are for checking only: never for
training, never for choosing settings beyond this gate.

Also reported: Spearman's rho between score and inserted level per slice.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deltaiqa_lite.physics.label_rule import continuous_score

INSERTED_SD_HU = (0.0, 8.0, 16.0, 32.0, 64.0, 128.0)
TARGET = {"mean_abs_diff": 0.25, "max_abs_diff": 0.6}
PROBE_SLOPE = (0.75, 1.25)
# Inserted noise textures: name -> the simulator's kernel whose FBP noise power spectrum it has.
TEXTURES = {"smooth": "soft", "standard": "standard", "sharp": "sharp"}
REGIONS = ("head", "neck", "chest", "abdomen", "pelvis")
# Region of each slice in SLICES (by file name).
SLICE_REGION = {"J2K_pixelrep_mismatch.dcm": "head", "693_UNCR.dcm": "head", "bad_sequence.dcm": "neck",
                "explicit_VR-UN.dcm": "abdomen", "CT_small.dcm": "chest"}
# (file, frame, what it shows, in scope) of the real CT slices in pydicom's test
# data. 693_J2KR/693_J2KI/693_UNCI are the same image as 693_UNCR. Out of scope,
# reported apart: CT_small is a 128x128 crop of an 85 mm field (upsampled 4x to
# the network's input, its noise turns into blotches). eCT_Supplemental's frames
# are a cerebral blood flow map, which the selection policy refuses: not used.
SLICES = (
    ("J2K_pixelrep_mismatch.dcm", None, "head, skull base, 221 mm field", True),
    ("693_UNCR.dcm", None, "head, 245 mm field", True),
    ("bad_sequence.dcm", None, "neck/upper thorax, spine, 147 mm field", True),
    ("explicit_VR-UN.dcm", None, "abdomen with contrast, 440 mm field", True),
    ("CT_small.dcm", None, "thoracic spine, 128x128 crop of an 85 mm field", False),
)
LOCAL_SD_WINDOW = 7          # pixels, for the local SD map of the GNL


@dataclass
class RealSliceResult:
    file: str
    frame: int | None
    part: str
    in_scope: bool
    native_noise_hu: float
    inserted_sd_hu: float
    measured_noise_hu: float
    rule_score: float
    scores: dict


def _testdata_path(name: str) -> Path:
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"{name}: not in pydicom's test data (install pydicom-data)")
    return Path(path)


def load_real_slices() -> list[tuple[str, int | None, str, bool, np.ndarray, np.ndarray]]:
    """HU planes of ``SLICES`` through the runtime's DICOM reader, and where the scanner reconstructed.

    The last item is a bool plane, True where the scanner reconstructed a pixel and False on
    Pixel Padding Value (outside its field of view). Noise is inserted only where it is True:
    a scanner's padding stays flat however noisy the image, and a network that reads noise in
    the padding would otherwise look better here than on the scanner's own noisy images.
    """
    from deltaiqa_lite.read.dicom import read_dicom

    planes = []
    for name, frame, part, in_scope in SLICES:
        item = list(read_dicom(_testdata_path(name)))[frame or 0]
        hu = np.asarray(item.hu, dtype=np.float32)
        reconstructed = np.ones(hu.shape, dtype=bool) if item.padding is None else ~item.padding
        planes.append((name, frame, part, in_scope, hu, reconstructed))
    return planes


def global_noise_level(hu: np.ndarray, window: int = LOCAL_SD_WINDOW, corrected: bool = True) -> float:
    """Mode of the local SD over soft tissue (0-100 HU after smoothing), in HU.

    A local SD over a few correlated pixels reads low (about 6 % for FBP-like
    noise in a 7x7 window); with ``corrected`` the estimate is divided by that
    bias, measured on synthetic noise of the inserted spectrum (:func:`gnl_bias`).
    """
    from scipy import ndimage

    mean = ndimage.uniform_filter(hu.astype(np.float64), window)
    mean_sq = ndimage.uniform_filter(hu.astype(np.float64) ** 2, window)
    local_sd = np.sqrt(np.maximum(mean_sq - mean ** 2, 0.0))
    soft = (mean > 0.0) & (mean < 100.0)
    soft = ndimage.binary_erosion(soft, iterations=window)
    values = local_sd[soft]
    if values.size < 200:
        raise ValueError(f"only {values.size} soft-tissue pixels: cannot estimate the noise")
    hist, edges = np.histogram(values, bins=np.arange(0.0, min(values.max(), 300.0) + 0.5, 0.5))
    peak = int(np.argmax(ndimage.uniform_filter1d(hist.astype(float), 5)))
    mode = float((edges[peak] + edges[peak + 1]) / 2)
    return mode / gnl_bias(window) if corrected else mode


_BIAS: dict[int, float] = {}


def gnl_bias(window: int = LOCAL_SD_WINDOW) -> float:
    """Ratio of the uncorrected GNL to the true SD, for FBP-like noise on a flat 45 HU field."""
    if window not in _BIAS:
        flat = np.full((512, 512), 45.0)
        sd = 40.0
        noisy = flat + ct_noise(flat.shape, sd, np.random.default_rng(12345))
        _BIAS[window] = global_noise_level(noisy, window, corrected=False) / sd
    return _BIAS[window]


def ct_noise(shape: tuple[int, int], sd_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise with an FBP-like spectrum (|f| x Hann^2), scaled to SD ``sd_hu``."""
    if sd_hu == 0:
        return np.zeros(shape, dtype=np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    hann = np.where(f < 0.5, 0.5 + 0.5 * np.cos(2 * np.pi * f), 0.0)
    amplitude = np.sqrt(f) * hann                # NPS = |f| W^2, amplitude its square root
    white = rng.standard_normal(shape)
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=shape)
    return (field / field.std() * sd_hu).astype(np.float32)


def textured_noise(shape: tuple[int, int], sd_hu: float, texture: str, rng: np.random.Generator) -> np.ndarray:
    """Stationary noise with the FBP spectrum of ``texture``'s kernel (``TEXTURES``), SD ``sd_hu``."""
    from convert.sim.simulate_v3 import nps_amplitude

    if texture not in TEXTURES:
        raise ValueError(f"unknown texture {texture!r}; choose one of {', '.join(TEXTURES)}")
    if sd_hu == 0:
        return np.zeros(shape, dtype=np.float32)
    amplitude = nps_amplitude(TEXTURES[texture], 1.0, 1.0, shape)
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * amplitude, s=shape)
    return (field / field.std() * sd_hu).astype(np.float32)


def probe_slope(rule: np.ndarray, score: np.ndarray) -> float:
    """Least-squares slope of ``score`` against ``rule`` (the shortcut probe)."""
    rule, score = np.asarray(rule, dtype=float), np.asarray(score, dtype=float)
    spread = float(np.sum((rule - rule.mean()) ** 2))
    if spread == 0:
        return float("nan")
    return float(np.sum((rule - rule.mean()) * (score - score.mean())) / spread)


def run_check_v2(models: dict[str, Path], seed: int = 0, levels=INSERTED_SD_HU,
                 textures=tuple(TEXTURES), log=print) -> dict:
    """Per-region gates and the shortcut probe (version 2 of the check, issue 21).

    Every in-scope slice is scored at every level with every texture by every
    model. Returns ``regions`` (per region and model: mean and worst
    |score - rule|, the worst case, passed), ``probe`` (per model, one slope
    per slice and texture), ``gates`` (passed, and one line per failure),
    ``regions_without_slices``, and the ``slices`` records.
    """
    import onnxruntime as ort

    from deltaiqa_lite.model.preprocess import prepare_hu
    from deltaiqa_lite.score import likert_from_probabilities

    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in models.items()}
    records = []
    for k, (name, frame, part, in_scope, hu, reconstructed) in enumerate(load_real_slices()):
        if not in_scope:
            continue
        region = SLICE_REGION.get(name, "unknown")
        native = global_noise_level(hu)
        for t, texture in enumerate(textures):
            rng = np.random.default_rng([seed, k, t])
            planes, rules = [], []
            for level in levels:
                planes.append(prepare_hu(hu + textured_noise(hu.shape, level, texture, rng) * reconstructed))
                rules.append(continuous_score(math.hypot(native, level)))
            batch = np.stack(planes)[..., None].astype(np.float32)
            scores = {m: likert_from_probabilities(s.run(["probabilities"], {"image": batch})[0])[0]
                      for m, s in sessions.items()}
            for i, level in enumerate(levels):
                records.append({"file": name, "frame": frame, "region": region, "part": part,
                                "texture": texture, "native_noise_hu": round(native, 2),
                                "inserted_sd_hu": level, "rule_score": round(rules[i], 3),
                                "scores": {m: round(float(v[i]), 3) for m, v in scores.items()}})
            log(f"real anatomy v2: {name} ({region}, {texture}): rule "
                + " ".join(f"{r:.2f}" for r in rules) + "; "
                + "; ".join(f"{m} " + " ".join(f"{x:.2f}" for x in v) for m, v in scores.items()))
    regions, probe, failures = {}, {}, []
    for region in REGIONS:
        mine = [r for r in records if r["region"] == region]
        if not mine:
            continue
        regions[region] = {}
        for m in models:
            diffs = np.array([abs(r["scores"][m] - r["rule_score"]) for r in mine])
            worst = mine[int(np.argmax(diffs))]
            entry = {"slices": len({r["file"] for r in mine}), "scored": len(mine),
                     "mean_abs_diff": round(float(diffs.mean()), 3),
                     "max_abs_diff": round(float(diffs.max()), 3),
                     "worst": {"file": worst["file"], "texture": worst["texture"],
                               "inserted_sd_hu": worst["inserted_sd_hu"], "score": worst["scores"][m],
                               "rule_score": worst["rule_score"]}}
            entry["passed"] = bool(entry["mean_abs_diff"] <= TARGET["mean_abs_diff"]
                                   and entry["max_abs_diff"] <= TARGET["max_abs_diff"])
            if not entry["passed"]:
                failures.append(f"{m} {region}: mean |score - rule| {entry['mean_abs_diff']} "
                                f"(<= {TARGET['mean_abs_diff']}), worst {entry['max_abs_diff']} "
                                f"(<= {TARGET['max_abs_diff']})")
            regions[region][m] = entry
    for m in models:
        probe[m] = []
        for name, texture in dict.fromkeys((r["file"], r["texture"]) for r in records):
            mine = [r for r in records if r["file"] == name and r["texture"] == texture]
            slope = probe_slope([r["rule_score"] for r in mine], [r["scores"][m] for r in mine])
            passed = bool(PROBE_SLOPE[0] <= slope <= PROBE_SLOPE[1])
            probe[m].append({"file": name, "region": mine[0]["region"], "texture": texture,
                             "slope": round(slope, 3), "passed": passed})
            if not passed:
                failures.append(f"{m} probe {name} ({mine[0]['region']}, {texture}): slope {slope:.3f} "
                                f"outside {PROBE_SLOPE[0]}-{PROBE_SLOPE[1]}")
    for line in failures:
        log(f"real anatomy v2: FAILED {line}")
    for region, entry in regions.items():
        log(f"real anatomy v2: {region}: " + "; ".join(
            f"{m} mean {e['mean_abs_diff']} worst {e['max_abs_diff']}" for m, e in entry.items()))
    return {
        "version": 2, "levels_hu": list(levels), "textures": {t: TEXTURES[t] for t in textures},
        "target": TARGET, "probe_slope": PROBE_SLOPE,
        "regions": regions, "probe": probe,
        "regions_without_slices": [r for r in REGIONS if r not in regions],
        "gates": {"passed": not failures, "failures": failures},
        "slices": records, "never_in_training": True,
    }


def run_check(models: dict[str, Path], seed: int = 0, levels=INSERTED_SD_HU, log=print) -> dict:
    """Score every real slice at every inserted level with each model; compare with the rule.

    Parameters
    ----------
    models : dict
        Name (e.g. ``"fp32"``) to ONNX path.

    Returns
    -------
    dict
        ``slices`` (one record per slice and level), ``summary`` per model
        (mean and worst |score - rule|, worst case named, per-slice Spearman
        rho) and ``target``.
    """
    import onnxruntime as ort

    from deltaiqa_lite.validate.metrics import srocc
    from deltaiqa_lite.model.preprocess import prepare_hu
    from deltaiqa_lite.score import likert_from_probabilities

    sessions = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for name, path in models.items()}
    records: list[RealSliceResult] = []
    for k, (name, frame, part, in_scope, hu, reconstructed) in enumerate(load_real_slices()):
        native = global_noise_level(hu)
        rng = np.random.default_rng([seed, k])
        planes, rows = [], []
        for level in levels:
            noisy = hu + ct_noise(hu.shape, level, rng) * reconstructed
            measured = math.hypot(native, level)
            planes.append(prepare_hu(noisy))
            rows.append((level, measured, continuous_score(measured)))
        batch = np.stack(planes)[..., None].astype(np.float32)
        scores = {m: likert_from_probabilities(s.run(["probabilities"], {"image": batch})[0])[0]
                  for m, s in sessions.items()}
        for i, (level, measured, rule) in enumerate(rows):
            records.append(RealSliceResult(name, frame, part, in_scope, round(native, 2), level,
                                           round(measured, 2),
                                           round(rule, 3), {m: round(float(v[i]), 3) for m, v in scores.items()}))
        log(f"real anatomy: {name}{'' if frame is None else f'[{frame}]'} ({part}): native noise "
            f"{native:.1f} HU; rule " + " ".join(f"{r[2]:.2f}" for r in rows) + "; "
            + "; ".join(f"{m} " + " ".join(f"{v:.2f}" for v in s) for m, s in scores.items()))
    summary = {m: _summarise([r for r in records if r.in_scope], m, srocc) for m in models}
    outside = {m: _summarise([r for r in records if not r.in_scope], m, srocc) for m in models}
    for m in models:
        log(f"real anatomy: {m}: mean |score - rule| {summary[m]['mean_abs_diff']}, worst "
            f"{summary[m]['max_abs_diff']} ({summary[m]['worst']['part']}, "
            f"+{summary[m]['worst']['inserted_sd_hu']:g} HU); outside scope: mean "
            f"{outside[m]['mean_abs_diff']}, worst {outside[m]['max_abs_diff']}")
    return {
        "method": "real CT slices from pydicom test data, FBP-like noise (NPS |f| x Hann^2) inserted "
                  "at known SDs; native noise = global noise level (mode of 7x7 local SD in 0-100 HU, "
                  "corrected for its bias on FBP-like noise); "
                  "rule = deltaiqa_lite.physics.label_rule.continuous_score(sqrt(native^2 + inserted^2))",
        "levels_hu": list(levels),
        "slices": [asdict(r) for r in records],
        "summary": summary,
        "outside_scope": outside,
        "target": TARGET,
        "never_in_training": True,
    }


def _summarise(records: list[RealSliceResult], m: str, srocc) -> dict:
    """Mean and worst |score - rule| of model ``m``, the worst case, and per-slice rank agreement."""
    diffs = np.array([abs(r.scores[m] - r.rule_score) for r in records])
    worst = records[int(np.argmax(diffs))]
    rhos = []
    for name, frame in dict.fromkeys((r.file, r.frame) for r in records):
        mine = [r for r in records if r.file == name and r.frame == frame]
        rhos.append(round(srocc(np.array([r.scores[m] for r in mine]),
                                np.array([r.inserted_sd_hu for r in mine])), 3))
    return {
        "slices": len(rhos), "scored": len(records),
        "mean_abs_diff": round(float(diffs.mean()), 3),
        "max_abs_diff": round(float(diffs.max()), 3),
        "worst": {"file": worst.file, "frame": worst.frame, "part": worst.part,
                  "inserted_sd_hu": worst.inserted_sd_hu, "score": worst.scores[m],
                  "rule_score": worst.rule_score},
        "spearman_rho_score_vs_noise_per_slice": rhos,
        "meets_target": bool(diffs.mean() <= TARGET["mean_abs_diff"]
                             and diffs.max() <= TARGET["max_abs_diff"]),
    }


def check_command(models: str | Path, metrics: str | Path | None = None, log=print) -> int:
    """``python -m convert real-anatomy``: run the check on the models in a folder, record it.

    The result goes into ``metrics.json`` (key ``real_anatomy``; version 2's
    per-region gates and probe under ``real_anatomy.v2``) beside the models.
    Exit 0 when every version-2 gate passes, 1 otherwise (the figures are
    recorded either way).
    """
    import json

    models = Path(models)
    found = {name: models / f"deltaiqa-{name}.onnx" for name in ("fp32", "int8")
             if (models / f"deltaiqa-{name}.onnx").exists()}
    if not found:
        raise FileNotFoundError(f"{models}: no deltaiqa-fp32.onnx or deltaiqa-int8.onnx")
    result = run_check(found, log=log)
    result["v2"] = run_check_v2(found, log=log)
    metrics = Path(metrics) if metrics else models / "metrics.json"
    report = json.loads(metrics.read_text()) if metrics.exists() else {}
    report["real_anatomy"] = result
    metrics.write_text(json.dumps(report, indent=1))
    log(f"real anatomy: recorded in {metrics}")
    gates = result["v2"]["gates"]
    log(f"real anatomy v2: gates {'passed' if gates['passed'] else 'FAILED'} "
        f"({len(gates['failures'])} failures; regions without a public slice: "
        f"{', '.join(result['v2']['regions_without_slices']) or 'none'})")
    return 0 if gates["passed"] else 1
