"""The training domain of a simulated data set, for the model card's ``training.domain``.

The runtime flags a slice ``outside-training`` when it is not what the model
was trained on (``deltaiqa_lite/physics/``, ``docs/physics.md``). What the
model was trained on is a property of the model, so the card carries it,
derived here from the data set's ``simulation.json``, never typed by hand:

- ``water_equivalent_diameter_mm`` and ``field_of_view_mm``: the smallest and
  largest value over the data set's phantoms, widened by :data:`DW_MARGIN_MM`
  and :data:`FOV_MARGIN_MM`. Simulator v2 records both per slice; v1 records
  neither, so its phantoms are drawn again from the recorded seed with
  :func:`convert.sim.simulate.make_phantom` (exactly as the simulator drew them)
  and measured;
- ``regions``: the simulator's body regions present in the data; ``body_parts``
  the DICOM (0018,0015) Body Part Examined values they correspond to
  (:data:`BODY_PART_REGIONS`); ``head``: whether head slices were trained on
  (then the 16 cm CTDI phantom alone does not make a slice outside).

One function per simulator version (:func:`domain_v1`, :func:`domain_v2`) and
:func:`training_domain` choosing between them by ``summary.version``.
"""

from __future__ import annotations

import math

import numpy as np

from convert.sim.data import DataError

__all__ = ["BODY_PART_REGIONS", "DW_MARGIN_MM", "FOV_MARGIN_MM", "body_parts_for", "domain_v1",
           "domain_v2", "training_domain"]

#: Margins added on both ends of the trained ranges. The runtime measures Dw on the
#: reconstructed slice (TG-220, -500 HU body threshold, table dropped): on simulated
#: slices it agrees with the phantom's own Dw within about 1 mm, and a truncated body
#: gives a lower bound; 10 mm (3-8 % of Dw) covers that and the sampling of a finite set
#: of phantoms without admitting another kind of patient. The field of view is exact
#: (column spacing x columns); 10 mm covers rounding of Pixel Spacing and a field a
#: little off the trained sizes, which the resize to 512 pixels barely changes.
DW_MARGIN_MM = 10.0
FOV_MARGIN_MM = 10.0

#: DICOM (0018,0015) Body Part Examined values (PS3.16 Annex L defined terms, plus
#: spellings longer than CS allows that some scanners write anyway) and the simulator
#: regions each one covers. A value spanning several regions (ABDOMENPELVIS) is inside the
#: domain when any of its regions was trained: the element names the whole series, and its
#: slices from untrained regions are still caught by Dw and field of view.
BODY_PART_REGIONS: dict[str, tuple[str, ...]] = {
    "HEAD": ("head",), "BRAIN": ("head",), "SKULL": ("head",),
    "NECK": ("neck",), "LARYNX": ("neck",), "THYROID": ("neck",),
    "CHEST": ("chest",), "THORAX": ("chest",), "LUNG": ("chest",), "HEART": ("chest",),
    "MEDIASTINUM": ("chest",),
    "ABDOMEN": ("abdomen",), "LIVER": ("abdomen",), "KIDNEY": ("abdomen",),
    "PANCREAS": ("abdomen",), "SPLEEN": ("abdomen",), "STOMACH": ("abdomen",),
    "GALLBLADDER": ("abdomen",), "ADRENAL": ("abdomen",),
    "PELVIS": ("pelvis",), "BLADDER": ("pelvis",), "PROSTATE": ("pelvis",), "UTERUS": ("pelvis",),
    "HEADNECK": ("head", "neck"),
    "NECKCHEST": ("neck", "chest"),
    "CHESTABDOMEN": ("chest", "abdomen"),
    "ABDOMENPELVIS": ("abdomen", "pelvis"), "ABDOMEN_PELVIS": ("abdomen", "pelvis"),
    "CHESTABDPELVIS": ("chest", "abdomen", "pelvis"),
    "CHESTABDOMENPELVIS": ("chest", "abdomen", "pelvis"),
    "CHEST_ABDOMEN_PELVIS": ("chest", "abdomen", "pelvis"),
    "NECKCHESTABDOMEN": ("neck", "chest", "abdomen"),
    "NECKCHESTABDPELV": ("neck", "chest", "abdomen", "pelvis"),
    "TRUNK": ("chest", "abdomen", "pelvis"), "BODY": ("chest", "abdomen", "pelvis"),
    "WHOLEBODY": ("head", "neck", "chest", "abdomen", "pelvis"),
}


def body_parts_for(regions) -> list[str]:
    """The Body Part Examined values (sorted) of which at least one region is in ``regions``.

    Raises
    ------
    DataError
        A region that no Body Part Examined value covers (a new simulator region
        needs its DICOM values in :data:`BODY_PART_REGIONS`).
    """
    regions = list(regions)
    known = {region for covered in BODY_PART_REGIONS.values() for region in covered}
    unknown = [region for region in regions if region not in known]
    if unknown:
        raise DataError(f"simulator region(s) {', '.join(map(repr, unknown))} have no Body Part Examined "
                        "values; add them to convert.card.domain.BODY_PART_REGIONS")
    return sorted(value for value, covered in BODY_PART_REGIONS.items()
                  if any(region in regions for region in covered))


def _range(values, margin: float) -> list[float]:
    return [round(float(min(values)) - margin, 1), round(float(max(values)) + margin, 1)]


def _domain(version: int, regions: list[str], dw_mm: list[float], fov_mm: list[float],
            source: str) -> dict:
    return {
        "source": source,
        "simulator_version": version,
        "regions": regions,
        "body_parts": body_parts_for(regions),
        "head": "head" in regions,
        "water_equivalent_diameter_mm": _range(dw_mm, DW_MARGIN_MM),
        "field_of_view_mm": _range(fov_mm, FOV_MARGIN_MM),
        "margins_mm": {"water_equivalent_diameter": DW_MARGIN_MM, "field_of_view": FOV_MARGIN_MM},
    }


def _slices(simulation: dict) -> list[dict]:
    slices = simulation.get("slices")
    if not isinstance(slices, list) or not slices:
        raise DataError("simulation.json has no slices; cannot derive the training domain")
    return slices


def _ellipse_phantom_dw_mm(phantom) -> float:
    """Water-equivalent diameter of a v1 ellipse phantom, exactly, without rasterising.

    The phantom's HU is -1000 plus the ``delta_hu`` of every ellipse covering a
    point, so ``sum (HU/1000 + 1) dA = sum_e delta_e/1000 * pi a_e b_e``; the
    couch is left out, as the runtime drops a table separated by air.
    """
    water_area = sum(e.delta_hu / 1000.0 * math.pi * e.a_mm * e.b_mm
                     for e in phantom.ellipses if e.name != "couch")
    return 2.0 * math.sqrt(water_area / math.pi)


def domain_v1(simulation: dict) -> dict:
    """Training domain of a simulator v1 data set (``convert/sim/simulate.py``).

    v1's ``simulation.json`` records per slice the phantom index and body width
    but not Dw or the field of view, so each phantom is drawn again from
    ``summary.seed`` as :class:`convert.sim.simulate.PhantomScan` draws it, its
    recorded body width checked, and its Dw and field of view taken from it.

    Raises
    ------
    DataError
        No slices or seed, or a redrawn phantom whose width differs from the
        recorded one (the simulator changed since the data were made).
    """
    from convert.sim import simulate

    slices = _slices(simulation)
    seed = (simulation.get("summary") or {}).get("seed")
    if seed is None:
        raise DataError("simulation.json summary has no seed; cannot redraw the v1 phantoms")
    dws, fovs = [], []
    recorded = {}
    for record in slices:
        recorded.setdefault(int(record["phantom"]), record.get("body_width_mm"))
    for index, width in sorted(recorded.items()):
        phantom = simulate.make_phantom(np.random.default_rng([seed, index]))
        if width is not None and abs(phantom.body_width_mm - float(width)) > 0.01:
            raise DataError(f"simulation.json phantom {index}: recorded body width {width} mm, redrawn "
                            f"{phantom.body_width_mm:.2f} mm; the v1 simulator changed since these data "
                            "were made, so their domain cannot be derived")
        dws.append(_ellipse_phantom_dw_mm(phantom))
        fovs.append(phantom.fov_mm)
    return _domain(1, list(simulate.REGIONS), dws, fovs,
                   f"simulator v1: {len(recorded)} phantoms redrawn from seed {seed} (convert/sim/simulate.py "
                   f"make_phantom); Dw and field of view +-{DW_MARGIN_MM:g} / {FOV_MARGIN_MM:g} mm")


def domain_v2(simulation: dict) -> dict:
    """Training domain of a simulator v2 or v3 data set (``convert/sim/simulate_v2.py``, ``simulate_v3.py``).

    Dw (the phantom's, before any truncation), field of view and region are
    recorded per slice; the regions are those present, in the order of the
    simulator's ``settings.regions``.

    Raises
    ------
    DataError
        No slices, or slices without ``water_equivalent_diameter_mm``,
        ``fov_mm`` or ``region``.
    """
    slices = _slices(simulation)
    keys = ("water_equivalent_diameter_mm", "fov_mm", "region")
    for record in slices:
        missing = [key for key in keys if record.get(key) is None]
        if missing:
            raise DataError(f"simulation.json slice {record.get('file', '?')} lacks {', '.join(missing)}; "
                            "cannot derive the v2 training domain")
    order = list(((simulation.get("summary") or {}).get("settings") or {}).get("regions") or [])
    present = {record["region"] for record in slices}
    regions = [r for r in order if r in present] + sorted(present - set(order))
    version = (simulation.get("summary") or {}).get("version", 2)
    return _domain(version, regions, [r["water_equivalent_diameter_mm"] for r in slices],
                   [r["fov_mm"] for r in slices],
                   f"simulator v{version}: per-slice water_equivalent_diameter_mm, fov_mm and region of "
                   f"{len(slices)} slices in simulation.json; Dw and field of view "
                   f"+-{DW_MARGIN_MM:g} / {FOV_MARGIN_MM:g} mm")


def training_domain(simulation: dict) -> dict:
    """The training domain of a ``simulation.json`` document (v1, v2 or v3 by ``summary.version``)."""
    version = (simulation.get("summary") or {}).get("version", 1)
    if version == 1:
        return domain_v1(simulation)
    if version in (2, 3):
        return domain_v2(simulation)
    raise DataError(f"simulation.json summary.version is {version!r}; expected 1, 2 or 3")
