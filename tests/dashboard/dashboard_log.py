"""A generated QA log for the dashboard tests and benchmark: stations, series, slices, one drifting station.

Deterministic (fixed seed). Station names, descriptions, protocols and kernels
carry HTML, quotes and a spreadsheet formula, as a hostile or careless scanner
could send them; the dashboard must show them as text.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from deltaiqa_lite.qa.log import QALog, SliceRecord, SREvent

STATIONS = (
    # (station, protocol, kernel, body part, description)
    ("CT1", "ABDOMEN", "B30f", "ABDOMEN", "Abdomen 1.0"),
    ("<script>alert('st')</script>", "CHEST", "B70f", "CHEST", "<img src=x onerror=alert(1)>"),
    ('CT "Room" 3', "=HYPERLINK(\"http://x\")", 'FC18"><b>k</b>', "ABDOMEN", 'Abd "quoted"'),
    ("CT4", "HEAD", "H40s", "HEAD", "Head & neck"),
    ("CT5 drifting", "ABDOMEN", "I40f", "ABDOMEN", "Abdomen portal"),
)
DRIFT_STATION = "CT5 drifting"
START = datetime(2026, 1, 1, 7, 0)


def generate(log: QALog, *, n_slices: int = 10_000, per_series: int = 20, days: int = 60,
             seed: int = 7, start: datetime = START, sr_every: int = 10) -> dict:
    """Write about ``n_slices`` scored slices (plus some refusals) evenly over the stations."""
    rng = np.random.default_rng(seed)
    n_series = max(len(STATIONS), n_slices // per_series)
    written = 0
    for k in range(n_series):
        station, protocol, kernel, body, description = STATIONS[k % len(STATIONS)]
        when = start + timedelta(days=days * k / n_series, minutes=int(rng.integers(0, 50)))
        series_uid = f"1.2.826.0.1.3680043.8.498.9{k:07d}"
        study_uid = f"1.2.826.0.1.3680043.8.498.8{k // 2:07d}"  # two series per exam
        late = when > start + timedelta(days=days * 0.8)
        shift = -0.9 if (station == DRIFT_STATION and late) else 0.0
        base = 2.8 + 0.1 * (k % len(STATIONS)) + shift + rng.normal(0.0, 0.08)
        noise_base = 14.0 + 2.0 * (k % len(STATIONS)) + (9.0 if shift else 0.0)
        dw = float(rng.uniform(240, 340))
        records = []
        for i in range(per_series):
            score = float(np.clip(base + rng.normal(0.0, 0.25), 0.0, 4.0))
            noise = float(noise_base + rng.normal(0.0, 1.5))
            flags = "score-noise-disagree" if (station == DRIFT_STATION and late and i == 0) else ""
            stamp = (when + timedelta(seconds=i)).isoformat(timespec="seconds")
            records.append(SliceRecord(
                source="serve", status="ok", scored_at=stamp, study_uid=study_uid, series_uid=series_uid,
                sop_instance_uid=f"{series_uid}.{i + 1}", modality="CT", acquisition_datetime=when.isoformat(
                    timespec="seconds"), station_name=station, protocol_name=protocol,
                series_description=description, body_part=body, kvp=120.0, ctdivol_mgy=8.0, kernel=kernel,
                slice_thickness_mm=1.0, score=score, likert=int(round(score)), model="deltaiqa-int8",
                precision="int8", provider="CPUExecutionProvider", slice_location=float(i * 1.0),
                noise_hu=noise, water_equivalent_diameter_mm=dw, ssde_mgy=8.0 * 1.2,
                noise_score=score, flags=flags))
        if k % 7 == 0:
            records.append(SliceRecord(source="serve", status="refused", series_uid=series_uid,
                                       scored_at=when.isoformat(timespec="seconds"),
                                       study_uid=study_uid, sop_instance_uid=f"{series_uid}.9000",
                                       station_name=station, acquisition_datetime=when.isoformat(
                                           timespec="seconds"), refused_kind="localizer",
                                       reason="<b>localizer</b> (ImageType LOCALIZER)"))
        written += log.record(records)
        if sr_every and k % sr_every == 0:
            log.record_sr(SREvent(series_uid, "queued", recorded_at=when.isoformat(timespec="seconds")))
            log.record_sr(SREvent(series_uid, "sent" if k % (2 * sr_every) else "send_failed",
                                  recorded_at=(when + timedelta(minutes=1)).isoformat(timespec="seconds"),
                                  sr_sop_instance_uid=f"2.25.{k + 1}", destination="PACS@127.0.0.1:11112",
                                  attempts=1, reason=None if k % (2 * sr_every) else "<peer> refused"))
    return {"series": n_series, "rows": written}
