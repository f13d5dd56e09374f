"""Generated QA logs: N days of series on a few station/protocol/kernel groups, optional drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from deltaiqa_lite.qa.log import QALog, SliceRecord


@dataclass(frozen=True)
class Group:
    station: str
    protocol: str
    kernel: str
    centre: float  # true mean series score
    series_sd: float  # series-to-series spread of the true score


GROUPS = (Group("CT1", "ABDOMEN", "B30f", 3.0, 0.12), Group("CT2", "THORAX", "B70f", 2.5, 0.12))
SLICE_SD = 0.2


def generate_log(path: Path, *, days: int = 90, seed: int = 7, series_per_day: int = 6,
                 slices_per_series: int = 4, drift_day: int | None = None,
                 drift: float = -0.4, drift_station: str = "CT1",
                 start: str = "2024-01-01") -> dict[str, list[str]]:
    """Write a QA log; return, per station, the series UIDs in time order.

    From ``drift_day`` (0-based) on, every series of ``drift_station`` has its true
    score shifted by ``drift`` (a step, as after a detector or kernel change).
    """
    rng = np.random.default_rng(seed)
    day0 = datetime.fromisoformat(start)
    order: dict[str, list[str]] = {g.station: [] for g in GROUPS}
    counter = 0
    with QALog(path) as log:
        for day in range(days):
            records: list[SliceRecord] = []
            for group in GROUPS:
                # Distinct minutes, so the time order of the series is unambiguous.
                minutes = np.sort(rng.choice(np.arange(8 * 60, 18 * 60), series_per_day,
                                             replace=False))
                for minute in minutes:
                    counter += 1
                    series_uid = f"1.2.826.0.1.3680043.8.498.{counter}"
                    true = group.centre + rng.normal(0.0, group.series_sd)
                    if drift_day is not None and day >= drift_day and group.station == drift_station:
                        true += drift
                    stamp = (day0 + timedelta(days=day, minutes=int(minute))).isoformat()
                    order[group.station].append(series_uid)
                    for k in range(slices_per_series):
                        score = float(np.clip(true + rng.normal(0.0, SLICE_SD), 0.0, 4.0))
                        records.append(SliceRecord(
                            source="generated", status="ok", series_uid=series_uid,
                            study_uid=series_uid + ".0", sop_instance_uid=f"{series_uid}.{k + 1}",
                            acquisition_datetime=stamp, station_name=group.station,
                            protocol_name=group.protocol, kernel=group.kernel, modality="CT",
                            score=score, likert=round(score), model="generated"))
            log.record(records)
    return order
