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

Retry times are kept in memory on the monotonic clock (a wall clock stepped back
must not delay SRs); after a restart every waiting SR is due at once. A local
write error (disk full) never deletes a waiting SR: its state is kept in memory
and written again later. Temporary ``.part`` files are removed when a write
fails, and at start. A pass stops early when the destination does not answer
(the remaining SRs would wait out the same timeout each), and :meth:`abort`
cuts the attempt in flight, so a node stops within seconds whatever the
destination does.

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
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.qa.log import QALog, SREvent
from deltaiqa_lite.qa.tls import TLSSettings, client_context

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
    next_try: float = 0.0  # on the outbox's monotonic clock; 0 (due) after a restart
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


PART_SUFFIX = ".part"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) through a temporary name: whole or not at all, no leftover."""
    partial = path.with_name(f".{path.name}{PART_SUFFIX}")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the file is the only copy once the SR is built
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk must not leave half files behind
        raise


def remove_stale_parts(folder: Path) -> None:
    """Temporary files of writes a kill cut short (never complete, never needed)."""
    for stale in folder.glob(f".*{PART_SUFFIX}"):
        try:
            stale.unlink()
        except OSError:
            pass



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
        Monotonic clock for retry times (tests pass their own).
    tls : TLSSettings, optional
        Send over TLS, verifying the destination (:mod:`deltaiqa_lite.qa.tls`).
    """

    def __init__(self, folder: str | os.PathLike, destination: Destination, log: QALog, *,
                 calling_aet: str = "DELTAIQA", retry_initial_s: float = 2.0,
                 retry_max_s: float = 300.0, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 tls: TLSSettings | None = None) -> None:
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
        # Built once: bad TLS files are a start-up error, not a failed send per SR.
        self._tls = client_context(tls) if tls is not None else None
        remove_stale_parts(self.folder)
        # SOP UID -> (attempts, next try on ``clock``, last error): the retry state that
        # counts; the sidecar is a copy for restarts and people, written when it can be.
        self._retry: dict[str, tuple[int, float, str | None]] = {}
        self._current = None  # the association in flight, for abort()
        self._stopping: threading.Event | None = None  # the stop flag of the pass running
        self._current_lock = threading.Lock()

    # -- state on disk
    def _paths(self, sop: str) -> tuple[Path, Path]:
        if not _UID.match(sop) or len(sop) > 64:
            raise OutboxError(f"SOP Instance UID {sop!r} is not a valid UID; not used as a file name")
        return self.folder / f"{sop}.dcm", self.folder / f"{sop}.json"

    def _save(self, item: OutboxItem) -> None:
        atomic_write(self._paths(item.sop_instance_uid)[1],
                      json.dumps(asdict(item), sort_keys=True).encode("utf-8"))

    def items(self) -> list[OutboxItem]:
        """Waiting SRs (those with both the file and its state), oldest next try first."""
        found = []
        for state in sorted(self.folder.glob("*.json")):
            if not (self.folder / f"{state.stem}.dcm").is_file():
                continue
            try:
                item = OutboxItem(**json.loads(state.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                # A damaged sidecar: send the SR anyway, as a first attempt.
                item = OutboxItem(state.stem, "unknown")
            found.append(self._with_retry(item))
        for dcm in sorted(self.folder.glob("*.dcm")):
            if not (self.folder / f"{dcm.stem}.json").is_file():
                # SR written, crash (or full disk) before its state
                found.append(self._with_retry(OutboxItem(dcm.stem, "unknown")))
        return sorted(found, key=lambda item: (item.next_try, item.sop_instance_uid))

    def _with_retry(self, item: OutboxItem) -> OutboxItem:
        # The in-memory retry state wins; a sidecar's next_try from another process
        # (another boot's monotonic clock) means nothing here: due now.
        if item.sop_instance_uid in self._retry:
            item.attempts, item.next_try, item.last_error = self._retry[item.sop_instance_uid]
        else:
            item.next_try = 0.0
        return item

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
        atomic_write(dcm, buffer.getvalue())
        content = f"{dataset.get('ContentDate', '')}{dataset.get('ContentTime', '')}" or None
        self._retry.pop(sop, None)  # a new SR: a first attempt, now
        try:
            self._save(OutboxItem(sop, series_uid, content, 0, 0.0, None))
        except OSError as error:
            # The SR itself is on disk and items() finds it without its state.
            print(f"deltaiqa-lite: SR {sop}: state not saved ({error.strerror or error}); "
                  "it is sent anyway", file=sys.stderr, flush=True)
        return dcm

    def remove(self, sop: str) -> None:
        dcm, state = self._paths(sop)
        dcm.unlink(missing_ok=True)
        state.unlink(missing_ok=True)
        self._retry.pop(sop, None)

    def abort(self) -> None:
        """Cut the attempt in flight (a stopping node); the SR stays for the next start."""
        with self._current_lock:
            if self._current is not None:
                self._current.abort()

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
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title,
                             **self._association_options())
        if not assoc.is_established:
            what = "rejected" if assoc.is_rejected else \
                "could not be established (destination down, port closed or aborted)"
            return False, f"association with {dest} {what}"
        with self._current_lock:
            self._current = assoc
            if self._stopping is not None and self._stopping.is_set():
                assoc.abort()
                self._current = None
                return False, f"association with {dest} aborted (the node is stopping)"
        try:
            status = assoc.send_c_store(dataset)
        finally:
            with self._current_lock:
                self._current = None
            if assoc.is_established:
                assoc.release()
        if not status or "Status" not in status:
            return False, f"no C-STORE response from {dest} (connection lost or timed out)"
        code = int(status.Status)
        if code == 0x0000:
            return True, None
        comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
        return False, f"{dest} answered C-STORE status 0x{code:04X}{comment}"

    def _association_options(self) -> dict:
        if self._tls is None:
            return {}
        return {"tls_args": (self._tls, self.destination.host)}

    def _record(self, event: SREvent) -> None:
        try:
            self.log.record_sr(event)
        except Exception as error:  # noqa: BLE001 - a full disk must not stop sending
            print(f"deltaiqa-lite: SR event {event.event} of series {event.series_uid} not "
                  f"logged: {error}", file=sys.stderr, flush=True)

    def send_due(self, stop: threading.Event | None = None) -> list[SendResult]:
        """Try every SR whose next try is due; delete on Success, else back off. One pass.

        The pass ends early when ``stop`` is set, or after an attempt the destination
        did not answer (unreachable, no association, no response): the other SRs
        would each wait out the same timeout; they are tried on the next pass.
        """
        results = []
        now = self.clock()
        self._stopping = stop
        for item in self.items():
            if stop is not None and stop.is_set():
                break
            if item.next_try > now:
                continue
            dcm, _ = self._paths(item.sop_instance_uid)
            ok, reason = self._store(dcm)
            item.attempts += 1
            if ok:
                self.remove(item.sop_instance_uid)
                self._record(SREvent(series_uid=item.series_uid, event="sent",
                                     sr_sop_instance_uid=item.sop_instance_uid,
                                     destination=str(self.destination),
                                     content_datetime=item.content_datetime,
                                     attempts=item.attempts))
            else:
                delay = min(self.retry_max_s, self.retry_initial_s * 2 ** (item.attempts - 1))
                item.next_try, item.last_error = self.clock() + delay, reason
                self._retry[item.sop_instance_uid] = (item.attempts, item.next_try, reason)
                try:
                    self._save(item)
                except OSError as error:
                    print(f"deltaiqa-lite: SR {item.sop_instance_uid}: state not saved "
                          f"({error.strerror or error}); kept in memory", file=sys.stderr,
                          flush=True)
                self._record(SREvent(series_uid=item.series_uid, event="send_failed",
                                     sr_sop_instance_uid=item.sop_instance_uid,
                                     destination=str(self.destination),
                                     content_datetime=item.content_datetime,
                                     attempts=item.attempts, reason=reason))
                print(f"deltaiqa-lite: SR {item.sop_instance_uid} of series {item.series_uid} not "
                      f"sent ({reason}); attempt {item.attempts}, next in {delay:g} s",
                      file=sys.stderr, flush=True)
            results.append(SendResult(item.sop_instance_uid, item.series_uid, ok, reason))
            if not ok and reason and reason.startswith(("association with", "no C-STORE")):
                break  # the destination is not answering: spare the others its timeout
        return results
