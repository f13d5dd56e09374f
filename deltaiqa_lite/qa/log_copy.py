"""Move a node's QA log into another (typically its SQLite file into the site's PostgreSQL).

The copy goes through :meth:`QALog.record`, so the destination keeps its own
guarantees: slices already there (same SOP Instance UID and frame) are kept,
series summaries are recomputed from the merged slices, and every batch is one
transaction. SR events, watched inputs and alarm acknowledgements are added
unless the same row is there already. Running the copy twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from deltaiqa_lite.qa.log import QALog, SliceRecord

_SLICE = [f.name for f in fields(SliceRecord)]


def copy_log(source: QALog, target: QALog, *, batch: int = 2000,
             progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``; returns rows added per table."""
    added = {"slices": 0, "sr_reports": 0, "inputs": 0, "alarm_acks": 0}
    last_id = 0
    while True:
        rows = source.execute(f"SELECT id, {', '.join(_SLICE)} FROM slices WHERE id > ? "
                              f"ORDER BY id LIMIT {int(batch)}", [last_id])
        if not rows:
            break
        last_id = rows[-1][0]
        added["slices"] += target.record([SliceRecord(**dict(zip(_SLICE, row[1:]))) for row in rows])
        if progress is not None:
            progress(added["slices"])
    seen_sr = {(e.series_uid, e.event, e.recorded_at, e.sr_sop_instance_uid)
               for e in target.sr_events()}
    for event in source.sr_events():
        if (event.series_uid, event.event, event.recorded_at, event.sr_sop_instance_uid) not in seen_sr:
            target.record_sr(event)
            added["sr_reports"] += 1
    for path, size, mtime_ns, status, reason, sop in source.execute(
            "SELECT path, size, mtime_ns, status, reason, sop_instance_uid FROM inputs ORDER BY path"):
        if not target.input_seen(path, size, mtime_ns):
            target.record_input(path, size, mtime_ns, status, reason, sop)
            added["inputs"] += 1
    seen_ack = {(a.alarm_key, a.acknowledged_at, a.acknowledged_by) for a in target.acknowledgements()}
    for ack in source.acknowledgements():
        if (ack.alarm_key, ack.acknowledged_at, ack.acknowledged_by) not in seen_ack:
            target.acknowledge(ack)
            added["alarm_acks"] += 1
    return added

