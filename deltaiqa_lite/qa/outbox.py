"""A persistent outbox of Structured Reports, sent to one DICOM destination by C-STORE.

Each SR waits in the outbox folder as ``<SOP Instance UID>.dcm`` with a
sidecar ``<SOP Instance UID>.json`` (series, attempts, next try, last error).
Both are written under a temporary name and renamed, so a crash leaves either
the old or the new state, never half a file. An SR is deleted only after the
destination answers C-STORE Success (0x0000); any other answer, a refused
association or an unreachable host counts as a failed attempt and the SR is
tried again after a delay that doubles per attempt (``retry_initial_s`` up to
``retry_max_s``). The folder is the state: a restarted node finds its SRs
there and goes on. An updated SR of the same series has the same SOP
Instance UID (deltaiqa_lite.output.sr.sr_uids) and so replaces the waiting one.

Warning statuses (0xB000, 0xB006, 0xB007: stored with coercion or with
elements discarded) are treated like failures and retried, because the node
is required to delete only on Success; a destination that always answers
Warning is visible in the QA log as ``send_failed`` rows with the status.

Needs pynetdicom (the ``net`` extra) for sending.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.qa.log import QALog, SREvent

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DESTINATION = re.compile(r"^(?P<aet>[^@\\]{1,16})@(?P<host>[^:@\s]+|\[[0-9a-fA-F:]+\]):(?P<port>[0-9]{1,5})$")


class OutboxError(DeltaIQAError):
    """Bad outbox settings (destination syntax, folder not writable)."""


@dataclass(frozen=True)
class Destination:
    """A DICOM Storage SCP: called AE title, host, port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """Parse ``AET@HOST:PORT`` (AE title 1-16 characters, no backslash; port 1-65535).

    Raises
    ------
    OutboxError
        The text does not have that form.
    """
    match = _DESTINATION.match(text.strip())
    port = int(match.group("port")) if match else 0
    if match is None or not 0 < port <= 65535 or not match.group("aet").strip():
        raise OutboxError(f"destination {text!r}: expected AET@HOST:PORT, e.g. ORTHANC@pacs:4242 "
                          "(AE title up to 16 characters, port 1-65535)")
    return Destination(match.group("aet").strip(), match.group("host").strip("[]"), port)


@dataclass
class OutboxItem:
    """State of one waiting SR (the sidecar JSON)."""

    sop_instance_uid: str
    series_uid: str
    content_datetime: str | None = None
    attempts: int = 0
    next_try: float = 0.0  # wall-clock seconds (time.time), so it survives restarts
    last_error: str | None = None


@dataclass(frozen=True)
class SendResult:
    """One C-STORE attempt."""

    sop_instance_uid: str
    series_uid: str
    ok: bool
    reason: str | None = None


def private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) private to this user: SRs and their state hold
    patient and study attributes, like the node's spool."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # the file is the only copy once the SR is built
    os.replace(partial, path)


class Outbox:
    """SRs waiting for their destination.

    Parameters
    ----------
    folder : path
        Created if missing; must survive restarts.
    destination : Destination
    log : QALog
        Receives ``sent`` and ``send_failed`` events.
    calling_aet : str
        Our AE title on the association.
    retry_initial_s, retry_max_s : float
        Delay after the first failure, and its cap (doubling in between).
    timeout_s : float
        Association, DIMSE and network timeouts of one attempt.
    clock : callable
        Wall clock (tests).
    """

    def __init__(self, folder: str | os.PathLike, destination: Destination, log: QALog, *,
                 calling_aet: str = "DELTAIQA", retry_initial_s: float = 2.0,
                 retry_max_s: float = 300.0, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        try:
            private_folder(self.folder)
        except OSError as error:
            raise OutboxError(f"{self.folder}: cannot create the SR outbox "
                              f"({error.strerror or error})") from error
        self.destination = destination
        self.log = log
        self.calling_aet = calling_aet
        self.retry_initial_s = float(retry_initial_s)
        self.retry_max_s = max(float(retry_max_s), self.retry_initial_s)
        self.timeout_s = float(timeout_s)
        self.clock = clock

    # -- state on disk
    def _paths(self, sop: str) -> tuple[Path, Path]:
        if not _UID.match(sop) or len(sop) > 64:
            raise OutboxError(f"SOP Instance UID {sop!r} is not a valid UID; not used as a file name")
        return self.folder / f"{sop}.dcm", self.folder / f"{sop}.json"

    def _save(self, item: OutboxItem) -> None:
        _atomic_write(self._paths(item.sop_instance_uid)[1],
                      json.dumps(asdict(item), sort_keys=True).encode("utf-8"))

    def items(self) -> list[OutboxItem]:
        """Waiting SRs (those with both the file and its state), oldest next try first."""
        found = []
        for state in sorted(self.folder.glob("*.json")):
            if not (self.folder / f"{state.stem}.dcm").is_file():
                continue
            try:
                found.append(OutboxItem(**json.loads(state.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                # A damaged sidecar: send the SR anyway, as a first attempt.
                found.append(OutboxItem(state.stem, "unknown"))
        for dcm in sorted(self.folder.glob("*.dcm")):
            if not (self.folder / f"{dcm.stem}.json").is_file():
                found.append(OutboxItem(dcm.stem, "unknown"))  # SR written, crash before its state
        return sorted(found, key=lambda item: (item.next_try, item.sop_instance_uid))

    def enqueue(self, dataset, series_uid: str) -> Path:
        """Put an SR (pydicom Dataset) in the outbox, replacing a waiting one of the same UID.

        The SR is written first and its state second, so a crash in between
        leaves an SR that :meth:`items` still finds.
        """
        from pydicom.filebase import DicomBytesIO

        sop = str(dataset.SOPInstanceUID)
        dcm, _ = self._paths(sop)
        buffer = DicomBytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        _atomic_write(dcm, buffer.getvalue())
        content = f"{dataset.get('ContentDate', '')}{dataset.get('ContentTime', '')}" or None
        self._save(OutboxItem(sop, series_uid, content, 0, self.clock(), None))
        return dcm

    def remove(self, sop: str) -> None:
        dcm, state = self._paths(sop)
        dcm.unlink(missing_ok=True)
        state.unlink(missing_ok=True)

    # -- sending
    def _store(self, path: Path) -> tuple[bool, str | None]:
        """One association, one C-STORE; (Success?, reason when not)."""
        try:
            import pydicom
            from pynetdicom import AE
        except ImportError as error:
            raise OutboxError("sending SRs needs pynetdicom: pip install 'deltaiqa-lite[net]'") \
                from error
        try:
            dataset = pydicom.dcmread(path)
        except (OSError, ValueError, EOFError) as error:
            return False, f"{path.name}: cannot read the SR ({error})"
        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = self.timeout_s
        ae.add_requested_context(str(dataset.SOPClassUID),
                                 ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        dest = self.destination
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            what = "rejected" if assoc.is_rejected else \
                "could not be established (destination down, port closed or aborted)"
            return False, f"association with {dest} {what}"
        try:
            status = assoc.send_c_store(dataset)
        finally:
            assoc.release()
        if not status or "Status" not in status:
            return False, f"no C-STORE response from {dest} (connection lost or timed out)"
        code = int(status.Status)
        if code == 0x0000:
            return True, None
        comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
        return False, f"{dest} answered C-STORE status 0x{code:04X}{comment}"

    def send_due(self) -> list[SendResult]:
        """Try every SR whose next try is due; delete on Success, else back off. One pass."""
        results = []
        now = self.clock()
        for item in self.items():
            if item.next_try > now:
                continue
            dcm, _ = self._paths(item.sop_instance_uid)
            ok, reason = self._store(dcm)
            item.attempts += 1
            if ok:
                self.remove(item.sop_instance_uid)
                self.log.record_sr(SREvent(series_uid=item.series_uid, event="sent",
                                           sr_sop_instance_uid=item.sop_instance_uid,
                                           destination=str(self.destination),
                                           content_datetime=item.content_datetime,
                                           attempts=item.attempts))
            else:
                delay = min(self.retry_max_s, self.retry_initial_s * 2 ** (item.attempts - 1))
                item.next_try, item.last_error = self.clock() + delay, reason
                self._save(item)
                self.log.record_sr(SREvent(series_uid=item.series_uid, event="send_failed",
                                           sr_sop_instance_uid=item.sop_instance_uid,
                                           destination=str(self.destination),
                                           content_datetime=item.content_datetime,
                                           attempts=item.attempts, reason=reason))
                print(f"deltaiqa-lite: SR {item.sop_instance_uid} of series {item.series_uid} not "
                      f"sent ({reason}); attempt {item.attempts}, next in {delay:g} s",
                      file=sys.stderr, flush=True)
            results.append(SendResult(item.sop_instance_uid, item.series_uid, ok, reason))
        return results
