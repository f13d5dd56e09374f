"""Round trip through a real PACS: Orthanc -> deltaiqa-lite serve -> SR -> Orthanc.

Orthanc (Debian package ``orthanc``) is started on free ports with a temporary
configuration that knows the deltaiqa-lite node as a modality. A CT series is
uploaded over REST, Orthanc is asked to C-STORE it to ``serve``, which scores
it and sends the SR back; the SR must appear in Orthanc under the same study
with the values of the QA log.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")
pytest.importorskip("highdicom", reason="SRs need the 'sr' extra (highdicom)")

from orthanc_node import ORTHANC, Orthanc, ServeNode, free_port, wait_for
from qa_builders import write_ct
from sr_checks import dciodvfy_problems, needs_dciodvfy

from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.output.sr import file_sha256, read_sr_values, sr_uids

pytestmark = [
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)"),
    pytest.mark.slow,
]

STUDY = "1.2.826.0.1.3680043.8.498.7001"
SERIES = "1.2.826.0.1.3680043.8.498.7002"


def _series(folder: Path, count: int, *, localizer: bool = False, first: int = 1) -> list[Path]:
    paths = []
    for index in range(first, first + count):
        path = folder / f"ct{index}.dcm"
        write_ct(path, series_uid=SERIES, study_uid=STUDY, instance=index, seed=index,
                 noise_hu=5.0 + 10 * index)
        paths.append(path)
    if localizer:  # same series, refused by the node: listed in the SR as not scored
        path = folder / "scout.dcm"
        ds = write_ct(path, series_uid=SERIES, study_uid=STUDY, instance=99, seed=99)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _sr_from_orthanc(orthanc: Orthanc, study_id: str) -> pydicom.Dataset | None:
    found = orthanc.sr_instances(study_id)
    if not found:
        return None
    assert len(found) == 1, found  # one SR per series, replaced on update
    return pydicom.dcmread(io.BytesIO(orthanc.file(found[0])))


def _check_against_log(sr: pydicom.Dataset, log_path: Path, tmp_path: Path) -> dict:
    path = tmp_path / "from-orthanc.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_problems(path) == []
    with QALog(log_path) as log:
        rows = log.slices(series_uid=SERIES)
    values = read_sr_values(sr)
    by_sop = {s["sop_instance_uid"]: s for s in values["slices"]}
    assert set(by_sop) == {r.sop_instance_uid for r in rows}
    for row in rows:
        entry = by_sop[row.sop_instance_uid]
        if row.status == "ok":
            assert (entry["score"], entry["likert"]) == (row.score, row.likert)
        else:
            assert entry["score"] is None and row.reason in entry["reason"]
    scores = sorted(r.score for r in rows if r.status == "ok")
    assert values["series"]["n_scored"] == len(scores)
    assert values["series"]["mean"] == pytest.approx(sum(scores) / len(scores), rel=1e-12)
    assert values["series"]["minimum"] == scores[0]
    return values


@needs_dciodvfy
def test_orthanc_round_trip_and_late_image(tmp_path: Path, shipped_models: Path) -> None:
    model = shipped_models / "deltaiqa-int8.onnx"
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"deltaiqa": ("DELTAIQA", "127.0.0.1", node_port)})
    orthanc.start()
    destination = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    node = ServeNode(tmp_path / "node", model, node_port, "--send-sr", destination,
                     "--series-idle", "2", "--ack-refused")
    (tmp_path / "node").mkdir()
    try:
        node.start()
        uploads = [orthanc.upload(p) for p in _series(tmp_path / "in", 4, localizer=True)]
        study_id, series_id = uploads[0]["ParentStudy"], uploads[0]["ParentSeries"]
        orthanc.store_to("deltaiqa", [series_id])
        sr = wait_for(lambda: _sr_from_orthanc(orthanc, study_id), 90, "the SR in Orthanc",
                      node.stderr, orthanc.log_tail)
        # Filed by Orthanc under the same patient and study, as a new series.
        source = pydicom.dcmread(tmp_path / "in" / "ct1.dcm", stop_before_pixels=True)
        assert (sr.PatientID, sr.PatientName, sr.StudyInstanceUID) == \
            (source.PatientID, source.PatientName, STUDY)
        assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == sr_uids(SERIES, file_sha256(model))
        values = _check_against_log(sr, node.log, tmp_path)
        assert (values["series"]["n_scored"], values["series"]["n_not_scored"]) == (4, 1)
        first_content = f"{sr.ContentDate}{sr.ContentTime}"

        # A late image of the reported series: an updated SR, same identity, new content time.
        late = orthanc.upload(_series(tmp_path / "late", 1, first=5)[0])
        orthanc.store_to("deltaiqa", [late["ID"]])

        def updated():
            current = _sr_from_orthanc(orthanc, study_id)
            return current if current is not None and len(
                read_sr_values(current)["slices"]) == 6 else None

        newer = wait_for(updated, 90, "the updated SR in Orthanc", node.stderr, orthanc.log_tail)
        assert newer.SOPInstanceUID == sr.SOPInstanceUID
        assert f"{newer.ContentDate}{newer.ContentTime}" > first_content
        assert _check_against_log(newer, node.log, tmp_path)["series"]["n_scored"] == 5
    finally:
        code = node.stop() if node.proc is not None else 0
        orthanc.stop()
    assert code == 0, node.stderr()
    with QALog(node.log) as log:
        events = [(e.event, e.destination, e.sr_sop_instance_uid)
                  for e in log.sr_events(series_uid=SERIES)]
    assert events == [("queued", destination, sr.SOPInstanceUID),
                      ("sent", destination, sr.SOPInstanceUID)] * 2
    assert list((node.outbox / "outbox").iterdir()) == []


def test_sr_waits_while_orthanc_is_down_across_a_node_restart(tmp_path: Path,
                                                              shipped_models: Path) -> None:
    model = shipped_models / "deltaiqa-int8.onnx"
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"deltaiqa": ("DELTAIQA", "127.0.0.1", node_port)})
    orthanc.start()
    destination = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    (tmp_path / "node").mkdir()
    node = ServeNode(tmp_path / "node", model, node_port, "--send-sr", destination,
                     "--series-idle", "3", "--sr-retry-max", "1")
    outbox = node.outbox / "outbox"
    try:
        node.start()
        uploads = [orthanc.upload(p) for p in _series(tmp_path / "in", 3)]
        study_id = uploads[0]["ParentStudy"]
        orthanc.store_to("deltaiqa", [uploads[0]["ParentSeries"]])
        orthanc.stop()  # the PACS goes down before the series is complete

        def failed_attempts() -> int:
            with QALog(node.log) as log:
                return len(log.sr_events(series_uid=SERIES, event="send_failed"))

        wait_for(failed_attempts, 60, "a failed send", node.stderr)
        held = sorted(p.name for p in outbox.glob("*.dcm"))
        assert held == [f"{sr_uids(SERIES, file_sha256(model))[1]}.dcm"]

        # The node restarts while the PACS is still down: the SR is still held, still retried.
        assert node.stop() == 0
        assert sorted(p.name for p in outbox.glob("*.dcm")) == held
        before = failed_attempts()
        node.start()
        wait_for(lambda: failed_attempts() > before, 60, "a retry after the restart",
                 node.stderr)

        orthanc.start()  # same ports, same storage
        sr = wait_for(lambda: _sr_from_orthanc(orthanc, study_id), 60, "the SR after recovery",
                      node.stderr, orthanc.log_tail)
        wait_for(lambda: not list(outbox.glob("*.dcm")), 30, "the outbox to empty", node.stderr)
    finally:
        code = node.stop() if node.proc is not None else 0
        orthanc.stop()
    assert code == 0, node.stderr()
    values = _check_against_log(sr, node.log, tmp_path)
    assert values["series"]["n_scored"] == 3
    with QALog(node.log) as log:
        events = log.sr_events(series_uid=SERIES)
    kinds = [e.event for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "sent" and set(kinds[1:-1]) == {"send_failed"}
    assert all(e.destination == destination for e in events)
    assert events[-1].attempts == len(kinds) - 1  # every attempt counted, across the restart
    assert "not sent (association with" in node.stderr()
