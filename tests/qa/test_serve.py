"""The receiver against real DICOM clients: DCMTK's storescu/echoscu and pynetdicom's SCU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pynetdicom = pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
from benchmarks.node import dcmtk_tool
from qa_builders import MR_IMAGE_STORAGE, ct_dataset, write_ct

from deltaiqa_lite import Scorer
from deltaiqa_lite.errors import InputError
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.serve import QAServer, ServeConfig, safe_child

REPO = Path(__file__).resolve().parents[2]
STORESCU, ECHOSCU = dcmtk_tool("storescu"), dcmtk_tool("echoscu")
needs_dcmtk = pytest.mark.skipif(STORESCU is None or ECHOSCU is None,
                                 reason="DCMTK storescu/echoscu not installed (apt-get install dcmtk)")


class ServeProcess:
    """`python -m deltaiqa_lite serve` in a subprocess on an ephemeral loopback port."""

    def __init__(self, tmp: Path, model: Path, *extra: str, log: str | None = None) -> None:
        # An SQLite file beside the spool, or a PostgreSQL URL (the node then names its spool).
        self.log = Path(log) if log and not log.startswith("postgresql://") else tmp / "qa.sqlite"
        if log and log.startswith("postgresql://"):
            self.log = log
            extra = (*extra, "--spool", str(tmp / "spool"))
        self.stderr_path = tmp / "serve.err"
        self._stderr = self.stderr_path.open("w")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deltaiqa_lite", "serve", "--port", "0", "--model", str(model),
             "--log", str(self.log), "--threads", "1", *extra],
            stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=tmp)
        deadline = time.monotonic() + 60
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            text = self.stderr_path.read_text()
            if "listening on " in text:
                address = text.split("listening on ", 1)[1].split()[0]
                self.host, port = address.rsplit(":", 1)
                self.port = int(port)
            elif self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        assert self.port is not None, self.stderr_path.read_text()

    def wait_logged(self, n: int, timeout: float = 60.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            if isinstance(self.log, str) or self.log.exists():
                with QALog(self.log) as log:
                    counts = log.counts()
                if sum(counts.values()) >= n:
                    return counts
            time.sleep(0.1)
        raise AssertionError(f"only {counts} logged after {timeout} s")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._stderr.close()
        return code, self.stderr_path.read_text()


@pytest.fixture
def scu() -> AE:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    ae.add_requested_context(Verification)
    return ae


@needs_dcmtk
def test_dcmtk_storescu_echoscu(tmp_path: Path, tiny_model: Path, log_target: str) -> None:
    files = [tmp_path / "in" / f"ct{i}.dcm" for i in range(4)]
    sops = [write_ct(f, series_uid="1.2.826.0.1.3680043.8.498.77", instance=i + 1,
                     seed=i).SOPInstanceUID for i, f in enumerate(files)]
    server = ServeProcess(tmp_path, tiny_model, "--allow", "SCANNER", "--store",
                          str(tmp_path / "store"), log=log_target)
    try:
        assert server.host == "127.0.0.1"
        echo = subprocess.run(check=False, args=[ECHOSCU, "-aet", "SCANNER", "-aec", "DELTAIQA", server.host,
                               str(server.port)], capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr
        store = subprocess.run(check=False, args=[STORESCU, "-aet", "SCANNER", "-aec", "DELTAIQA", server.host,
                                str(server.port), *map(str, files)],
                               capture_output=True, text=True, timeout=60)
        assert store.returncode == 0, store.stderr
        assert server.wait_logged(4) == {"ok": 4}
        # An unknown calling AE title is rejected at association.
        intruder = subprocess.run(check=False, args=[ECHOSCU, "-aet", "INTRUDER", "-aec", "DELTAIQA", server.host,
                                   str(server.port)], capture_output=True, text=True, timeout=30)
        assert intruder.returncode != 0
        assert "Calling AE Title Not Recognized" in intruder.stdout + intruder.stderr
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert "rejected (calling AE 'INTRUDER' not allowed)" in err
    assert "received 4, scored 4 (4 slices)" in err
    with QALog(server.log) as log:
        rows = log.slices()
    assert sorted(r.sop_instance_uid for r in rows) == sorted(sops)
    assert all(r.source == "serve" and r.station_name == "CT1" and r.kernel == "B30f"
               for r in rows)
    assert all(r.file_name is None for r in rows)
    stored = sorted(p.relative_to(tmp_path / "store").as_posix()
                    for p in (tmp_path / "store").rglob("*.dcm"))
    study = rows[0].study_uid
    assert len({r.study_uid for r in rows}) == 4  # the builder gives each file its own study
    assert all(s.split("/")[1] == "1.2.826.0.1.3680043.8.498.77" for s in stored)
    assert len(stored) == 4 and study is not None
    assert list((tmp_path / "spool").glob("*")) == []


def test_pynetdicom_scu_store_refusals_and_rejection(tmp_path: Path, tiny_model: Path,
                                                     scu: AE) -> None:
    server = ServeProcess(tmp_path, tiny_model, "--allow", "SCANNER")
    try:
        assoc = scu.associate(server.host, server.port, ae_title="DELTAIQA")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        good = [ct_dataset(seed=i) for i in range(3)]
        statuses = [assoc.send_c_store(ds).Status for ds in good]
        mr = ct_dataset(modality="MR", sop_class=MR_IMAGE_STORAGE)
        mr_status = assoc.send_c_store(mr).Status
        ct_class_mr = ct_dataset(modality="MR")
        mismatch_status = assoc.send_c_store(ct_class_mr).Status
        again_status = assoc.send_c_store(mr).Status  # a resend of a refused object
        assoc.release()
        assert statuses == [0x0000] * 3
        assert mr_status == 0x0122 and again_status == 0x0122
        assert mismatch_status == 0xA900
        counts = server.wait_logged(5)
        other = AE(ae_title="NOTALLOWED")
        other.add_requested_context(Verification)
        rejected = other.associate(server.host, server.port, ae_title="DELTAIQA")
        assert rejected.is_rejected
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert counts == {"ok": 3, "refused": 2}
    with QALog(server.log) as log:
        refused = {r.sop_instance_uid: r.reason for r in log.slices(status="refused")}
    assert refused[mr.SOPInstanceUID].startswith("(0008,0016) SOP Class UID is 'MR Image Storage'")
    assert refused[mr.SOPInstanceUID].endswith("(from SCANNER)")
    assert refused[ct_class_mr.SOPInstanceUID].startswith("(0008,0060) Modality is 'MR'")


def test_ack_refused_answers_success(tmp_path: Path, tiny_model: Path, scu: AE) -> None:
    server = ServeProcess(tmp_path, tiny_model, "--ack-refused")
    try:
        assoc = scu.associate(server.host, server.port, ae_title="DELTAIQA")
        status = assoc.send_c_store(ct_dataset(modality="MR", sop_class=MR_IMAGE_STORAGE)).Status
        assoc.release()
        assert status == 0x0000
        assert server.wait_logged(1) == {"refused": 1}
    finally:
        code, err = server.stop()
    assert code == 0 and "refused 1" in err


def test_non_loopback_without_allow_list_is_a_usage_error(tmp_path: Path, tiny_model: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(check=False, args=[sys.executable, "-m", "deltaiqa_lite", "serve", "--host", "0.0.0.0",
                           "--port", "0", "--model", str(tiny_model), "--log",
                           str(tmp_path / "qa.sqlite")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2
    assert "name the senders with --allow AET" in done.stderr


def test_default_bind_is_loopback() -> None:
    import argparse

    from deltaiqa_lite.commands import serve as serve_command

    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    args = parser.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 11112 and args.allow is None
    assert ServeConfig(spool_dir=Path("x")).host == "127.0.0.1"


# ------------------------------------------------------------ in-process receiver


class SlowScorer:
    """The real scorer plus a delay per batch, to build a backlog on purpose."""

    def __init__(self, scorer: Scorer, delay_s: float) -> None:
        self.scorer, self.delay_s = scorer, delay_s

    def score_paths(self, paths):
        time.sleep(self.delay_s)
        return self.scorer.score_paths(paths)


def _server(tmp_path: Path, scorer, log: QALog, **config) -> QAServer:
    server = QAServer(Ingestor(scorer, log, source="serve"),
                      ServeConfig(spool_dir=tmp_path / "spool", port=0, **config))
    server.start()
    return server


def test_stop_scores_everything_received(tmp_path: Path, scorer: Scorer, scu: AE) -> None:
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, SlowScorer(scorer, 0.2), log, batch_size=2)
        assoc = scu.associate(*server.address, ae_title="DELTAIQA")
        statuses = [assoc.send_c_store(ct_dataset(seed=i)).Status for i in range(12)]
        assoc.release()
        assert statuses == [0] * 12
        assert server.backlog() > 0  # the worker is behind: stop must wait for it
        stats = server.stop()
        assert stats.received == 12 and stats.scored == 12
        assert log.counts() == {"ok": 12}
    assert list((tmp_path / "spool").glob("*")) == []


def test_back_pressure_blocks_then_out_of_resources(tmp_path: Path, scorer: Scorer,
                                                     scu: AE) -> None:
    with QALog(tmp_path / "qa.sqlite") as log:
        # Long timeout: the handler waits for queue space; every object gets in, slowly.
        server = _server(tmp_path / "a", SlowScorer(scorer, 0.15), log, batch_size=1,
                         queue_size=2, queue_timeout_s=30.0)
        assoc = scu.associate(*server.address, ae_title="DELTAIQA")
        started = time.monotonic()
        statuses = [assoc.send_c_store(ct_dataset(seed=i)).Status for i in range(8)]
        elapsed = time.monotonic() - started
        assoc.release()
        assert statuses == [0] * 8
        assert elapsed >= 0.15 * (8 - 3)  # the sender was held back by the full queue
        server.stop()
        assert log.counts() == {"ok": 8}
    with QALog(tmp_path / "qa2.sqlite") as log:
        # Short timeout: a full queue answers 0xA700 and keeps nothing of that object.
        server = _server(tmp_path / "b", SlowScorer(scorer, 1.0), log, batch_size=1,
                         queue_size=1, queue_timeout_s=0.1)
        assoc = scu.associate(*server.address, ae_title="DELTAIQA")
        datasets = [ct_dataset(seed=i) for i in range(5)]
        statuses = [assoc.send_c_store(ds).Status for ds in datasets]
        assoc.release()
        assert 0xA700 in statuses and statuses[0] == 0
        stats = server.stop()
        accepted = {ds.SOPInstanceUID for ds, s in zip(datasets, statuses) if s == 0}
        assert {r.sop_instance_uid for r in log.slices()} == accepted
        assert stats.rejected_full == statuses.count(0xA700)


def test_spool_leftovers_scored_on_start(tmp_path: Path, scorer: Scorer) -> None:
    spool = tmp_path / "spool"
    ds = write_ct(spool / "placeholder.dcm")
    (spool / "placeholder.dcm").rename(spool / f"{ds.SOPInstanceUID}.dcm")
    (spool / f".{ds.SOPInstanceUID}.part").write_bytes(b"half")
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, scorer, log)
        server.stop()
        assert [r.sop_instance_uid for r in log.slices()] == [ds.SOPInstanceUID]
    assert not (spool / f"{ds.SOPInstanceUID}.dcm").exists()


# ------------------------------------------------------------ security


@pytest.mark.parametrize("uids", [("..",), ("1.2", "..", "3"), ("1/2",), ("../../etc/passwd",),
                                  ("1.2", "3\\4"), ("",), (".",), ("1.2/../..",)])
def test_safe_child_refuses_escaping_uids(tmp_path: Path, uids: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match="is not a valid DICOM UID"):
        safe_child(tmp_path, *uids)


def test_safe_child_path(tmp_path: Path) -> None:
    assert safe_child(tmp_path, "1.2", "3.4", "5.6") == tmp_path / "1.2" / "3.4" / "5.6.dcm"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("field,value", [
    ("SOPInstanceUID", "1.2.3/../../../escaped"), ("SOPInstanceUID", ".."),
    ("SeriesInstanceUID", "../../escaped"), ("StudyInstanceUID", "../../../escaped"),
    ("StudyInstanceUID", "1.2/3"),
])
def test_hostile_uids_never_escape_storage(tmp_path: Path, scorer: Scorer, scu: AE,
                                           field: str, value: str) -> None:
    root = tmp_path / "node"
    with QALog(root / "qa.sqlite") as log:
        server = _server(root, scorer, log, store_dir=root / "store")
        ds = ct_dataset()
        setattr(ds, field, value)
        if field == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = value
        assoc = scu.associate(*server.address, ae_title="DELTAIQA")
        status = assoc.send_c_store(ds).Status
        assoc.release()
        server.stop()
        assert status == 0xA900
        (row,) = log.slices()
        assert row.status == "refused" and "is not a valid UID" in row.reason
    inside = {p.resolve() for p in root.rglob("*")}
    everything = {p.resolve() for p in tmp_path.rglob("*")}
    assert everything - inside == {root.resolve()}  # nothing written outside the node folder
    assert not list(tmp_path.rglob("escaped*"))
    assert list((root / "store").rglob("*.dcm")) == []


def test_enhanced_ct_frames_logged_per_frame(tmp_path: Path, scorer: Scorer) -> None:
    from dicom_builders import enhanced_ct_dataset, phantom_hu
    from pynetdicom.sop_class import EnhancedCTImageStorage

    ds = enhanced_ct_dataset([phantom_hu(seed=k) for k in range(3)], shared_rescale=(1.0, -1024.0))
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(EnhancedCTImageStorage)
    with QALog(tmp_path / "qa.sqlite") as log:
        server = _server(tmp_path, scorer, log)
        assoc = ae.associate(*server.address, ae_title="DELTAIQA")
        status = assoc.send_c_store(ds).Status
        assoc.release()
        stats = server.stop()
        assert status == 0 and stats.scored == 1 and stats.slices == 3
        rows = log.slices()
        assert [(r.sop_instance_uid, r.frame) for r in rows] == [(ds.SOPInstanceUID, k)
                                                                  for k in range(3)]
        assert all(r.slice_thickness_mm == 1.0 and r.status == "ok" for r in rows)
        (series,) = log.series()
        assert series.n_slices == 3
