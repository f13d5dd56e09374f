"""DICOM Storage SCP: receive CT over the network (C-STORE), score it off the network thread.

Needs pynetdicom (the ``net`` extra: ``pip install deltaiqa-lite[net]``); it is
imported only here.

How one object travels::

    C-STORE (association thread)                      worker thread
    ----------------------------                      -------------
    calling AE on the allow-list? (else association rejected)
    SOP Class CT / Enhanced CT?    -> else refused, logged, 0x0122
    header: Modality CT, UIDs valid -> else refused, logged, 0xA900
    write spool/<SOP UID>.dcm (atomic rename)
    put the UID on the bounded queue --(full for queue_timeout s: 0xA700)
    answer 0x0000 Success                             take up to batch_size UIDs
                                                      score them in one batch
                                                      log them in one transaction
                                                      move to store/<study>/<series>/<sop>.dcm
                                                      (or delete the spool file)

Why spool to disk before answering: a Success status tells the scanner it may
forget the image. Writing it first means a crash or a SIGTERM after Success
never loses it: on the next start the leftovers in the spool are scored first.
Why the queue is still bounded (default 256 objects) although it only holds
UIDs: it keeps the backlog, and so the delay between acquisition and logged
score, bounded. When it is full the C-STORE handler blocks, which holds that
association and so slows the sender through TCP (scanners and PACS queue
images and are built for slow nodes); if it stays full for ``queue_timeout``
seconds the object is answered 0xA700 (Out of Resources) so the sender retries
later, instead of the node taking unbounded disk or memory.

File names come only from UIDs that passed ``is_valid_uid`` (digits and single
dots); the final path is checked to lie inside the spool/store folder as a
second guard. Nothing the sender calls a file name or path is ever used.

C-STORE statuses used: 0x0000 stored for scoring; 0x0122 SOP Class not
supported (not CT Image Storage nor Enhanced CT Image Storage); 0xA900 data
set does not match SOP Class (Modality not CT, invalid or mismatching UIDs);
0xC210 cannot understand (undecodable data set); 0xA700 out of resources
(queue full past the timeout, disk error). With ``ack_refused`` refused
objects are answered 0x0000 instead (still logged as refused, never stored),
for senders that retry failed objects forever.
"""

from __future__ import annotations

import os
import queue
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError, InputError
from deltaiqa_lite.qa.header import (
    CT_SOP_CLASSES,
    QAHeader,
    is_valid_uid,
    read_qa_header,
    refusal_reason,
)
from deltaiqa_lite.qa.ingest import FileOutcome, Ingestor, header_record, header_refused_kind
from deltaiqa_lite.qa.log import SliceRecord

STATUS_SUCCESS = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_DATASET_MISMATCH = 0xA900
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC210
LOOPBACK = "127.0.0.1"


class ServeError(DeltaIQAError):
    """The receiver cannot start (pynetdicom missing, port in use, bad configuration)."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the receiver.

    Attributes
    ----------
    host : str
        Address to bind; loopback unless told otherwise.
    port : int
        TCP port (0: an ephemeral port, reported by :meth:`QAServer.start`).
    ae_title : str
        Our AE title.
    allowed_aets : tuple of str or None
        Calling AE titles allowed to associate; None accepts any.
    spool_dir : path
        Where received objects wait for scoring (must survive restarts).
    store_dir : path or None
        Keep scored objects under ``<study>/<series>/<sop>.dcm``; None deletes them.
    queue_size, queue_timeout_s : int, float
        Back-pressure (see module docstring).
    batch_size : int
        Objects scored per batch by the worker.
    ack_refused : bool
        Answer refused objects 0x0000 instead of a failure status.
    grace_s : float
        On stop, how long to let open associations finish before aborting them.
    max_associations : int
        Concurrent associations.
    """

    spool_dir: Path
    host: str = LOOPBACK
    port: int = 11112
    ae_title: str = "DELTAIQA"
    allowed_aets: tuple[str, ...] | None = None
    store_dir: Path | None = None
    queue_size: int = 256
    queue_timeout_s: float = 30.0
    batch_size: int = 8
    ack_refused: bool = False
    grace_s: float = 10.0
    max_associations: int = 10


@dataclass
class ServeStats:
    """Counters of a running receiver (thread-safe increments via ``bump``)."""

    received: int = 0
    refused: int = 0
    rejected_full: int = 0
    scored: int = 0
    failed: int = 0
    duplicate: int = 0
    slices: int = 0
    first_received: float | None = None
    last_received: float | None = None
    last_scored: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + by)
            now = time.monotonic()
            if name == "received":
                self.first_received = self.first_received or now
                self.last_received = now
            if name in ("scored", "failed", "duplicate"):
                self.last_scored = now


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def safe_child(root: Path, *uids: str) -> Path:
    """``root/uid1/.../uidN.dcm`` for validated UIDs, guaranteed inside ``root``.

    Raises
    ------
    InputError
        A UID is not a valid DICOM UID (so it could carry '/', '..' or the like).
    """
    for uid in uids:
        if not is_valid_uid(uid):
            raise InputError(str(root), f"UID {uid!r} is not a valid DICOM UID; not used as a "
                                        "file name")
    *folders, last = uids
    path = root.joinpath(*folders, f"{last}.dcm")
    resolved_root = root.resolve()
    if resolved_root not in path.resolve().parents:
        raise InputError(str(root), f"{path} would leave the folder")  # defence in depth
    return path


class QAServer:
    """The Storage SCP plus its scoring worker.

    Parameters
    ----------
    ingestor : Ingestor
        Scores and logs spooled files (its log also receives the refusals).
    config : ServeConfig
    on_outcome : callable, optional
        Called with each file's outcome while the spooled file still exists
        (the SR reporter reads its identity there).
    """

    def __init__(self, ingestor: Ingestor, config: ServeConfig, *,
                 on_outcome: Callable[[FileOutcome], None] | None = None) -> None:
        self.ingestor = ingestor
        self.on_outcome = on_outcome
        self.config = config
        self.stats = ServeStats()
        self.spool = Path(config.spool_dir)
        self.store = Path(config.store_dir) if config.store_dir is not None else None
        self._queue: queue.Queue[str] = queue.Queue(maxsize=max(1, config.queue_size))
        self._queued: set[str] = set()
        self._queued_lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._server = None
        self._ae = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle
    def start(self) -> tuple[str, int]:
        """Bind, start the worker and the server thread; return (host, port) really bound."""
        try:
            from pynetdicom import (
                AE,
                ALL_TRANSFER_SYNTAXES,
                AllStoragePresentationContexts,
                evt,
            )
            from pynetdicom.sop_class import Verification
        except ImportError as error:
            raise ServeError("serve needs pynetdicom: pip install 'deltaiqa-lite[net]'") from error
        self.spool.mkdir(parents=True, exist_ok=True)
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        if self.config.allowed_aets is not None:
            ae.require_calling_aet = list(self.config.allowed_aets)
        # CT with every transfer syntax (compressed CT is decoded by the reader if the
        # codecs extra is there, else logged with the reason); every other storage
        # class is accepted too, only so that it can be refused per object with a
        # reason in the log instead of failing the whole association.
        for uid in sorted(CT_SOP_CLASSES):
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax not in CT_SOP_CLASSES:
                ae.add_supported_context(context.abstract_syntax)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REJECTED, self._on_rejected)]
        leftovers = sorted(str(p) for p in self.spool.glob("*.dcm"))
        self._worker = threading.Thread(target=self._work, args=(leftovers,),
                                        name="deltaiqa-score", daemon=True)
        self._worker.start()
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False,
                                           evt_handlers=handlers)
        except OSError as error:
            self._stopping.set()
            raise ServeError(f"cannot listen on {self.config.host}:{self.config.port}: "
                             f"{error.strerror or error}") from error
        self._ae = ae
        host, port = self._server.server_address[:2]
        self.address = (host, port)
        return self.address

    def stop(self) -> ServeStats:
        """Graceful stop: no new associations, let open ones finish (``grace_s``), score
        everything received, then return the counters."""
        if self._server is not None:
            self._server.shutdown()  # closes the listening socket; open associations go on
            deadline = time.monotonic() + self.config.grace_s
            while self._ae.active_associations and time.monotonic() < deadline:
                time.sleep(0.05)
            for assoc in self._ae.active_associations:
                assoc.abort()  # objects it had not been answered for are retried by the sender
            self._server = None
        self._stopping.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        return self.stats

    def backlog(self) -> int:
        """Objects received and not yet scored."""
        with self._queued_lock:
            return len(self._queued)

    # -- network thread handlers
    def _on_echo(self, event) -> int:
        return STATUS_SUCCESS

    def _on_rejected(self, event) -> None:
        requestor = event.assoc.requestor
        print(f"deltaiqa-lite serve: association from {requestor.address} rejected "
              f"(calling AE {requestor.ae_title!r} not allowed)", file=sys.stderr)

    def _refuse(self, header: QAHeader, reason: str, status: int, peer: str) -> int:
        self.ingestor.log.record([header_record(header, source="serve", status="refused",
                                                file_name=None, reason=f"{reason} (from {peer})",
                                                refused_kind=header_refused_kind(header))])
        self.stats.bump("refused")
        return STATUS_SUCCESS if self.config.ack_refused else status

    def _on_store(self, event) -> int:
        request = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        sop = str(request.AffectedSOPInstanceUID or "")
        peer = event.assoc.requestor.ae_title
        if not is_valid_uid(sop):
            return self._refuse(QAHeader(sop_class_uid=sop_class or None),
                                f"(0000,1000) Affected SOP Instance UID {sop!r} is not a valid UID",
                                STATUS_DATASET_MISMATCH, peer)
        # Write first (under a temporary name inside the spool), then read the header
        # back with the same code the watch folder uses.
        final = safe_child(self.spool, sop)
        partial = final.with_name(f".{sop}.part")
        try:
            with partial.open("wb") as handle:
                handle.write(event.encoded_dataset(include_meta=True))
        except OSError as error:
            print(f"deltaiqa-lite serve: cannot spool {sop}: {error}", file=sys.stderr)
            partial.unlink(missing_ok=True)
            return STATUS_OUT_OF_RESOURCES
        try:
            header = read_qa_header(partial)
        except InputError as error:
            partial.unlink(missing_ok=True)
            self.ingestor.log.record([SliceRecord(source="serve", status="error",
                                                  sop_instance_uid=sop, sop_class_uid=sop_class,
                                                  reason=f"{error.reason} (from {peer})")])
            self.stats.bump("failed")
            return STATUS_CANNOT_UNDERSTAND
        reason, status = None, STATUS_DATASET_MISMATCH
        if sop_class not in CT_SOP_CLASSES:
            reason, status = refusal_reason(QAHeader(sop_class_uid=sop_class)), \
                STATUS_SOP_CLASS_NOT_SUPPORTED
        elif header.sop_instance_uid != sop:
            reason = (f"(0008,0018) SOP Instance UID {header.sop_instance_uid!r} does not match "
                      f"the C-STORE request's {sop!r}")
        else:
            reason = refusal_reason(header)
            if reason is None and self.store is not None and not is_valid_uid(header.study_uid):
                reason = f"(0020,000D) Study Instance UID {header.study_uid!r} is not a valid UID"
        if reason is not None:
            partial.unlink(missing_ok=True)
            if self.ingestor.log.has_sop(sop):
                return STATUS_SUCCESS if self.config.ack_refused else status
            return self._refuse(header, reason, status, peer)
        with self._queued_lock:
            already = sop in self._queued
            self._queued.add(sop)
        os.replace(partial, final)
        if already:
            # A resend while the first copy still waits: the file was replaced, the
            # queue already holds the UID.
            self.stats.bump("received")
            return STATUS_SUCCESS
        try:
            self._queue.put(sop, timeout=self.config.queue_timeout_s)
        except queue.Full:
            with self._queued_lock:
                self._queued.discard(sop)
            final.unlink(missing_ok=True)
            self.stats.bump("rejected_full")
            return STATUS_OUT_OF_RESOURCES
        self.stats.bump("received")
        return STATUS_SUCCESS

    # -- worker thread
    def _take_batch(self) -> list[str]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.config.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self, leftovers: Sequence[str]) -> None:
        # Objects acknowledged before a crash or kill: score them before anything new.
        for start in range(0, len(leftovers), self.config.batch_size):
            self._ingest(list(leftovers[start:start + self.config.batch_size]))
        while True:
            batch = self._take_batch()
            if batch:
                self._ingest([str(self.spool / f"{sop}.dcm") for sop in batch])
                with self._queued_lock:
                    self._queued.difference_update(batch)
            elif self._stopping.is_set():
                return

    def _ingest(self, paths: list[str]) -> None:
        try:
            outcomes = self.ingestor.process(paths, names={p: None for p in paths})
        except Exception as error:  # noqa: BLE001 - a bug must not kill the receiver
            # The files stay in the spool and are tried again on the next start.
            print(f"deltaiqa-lite serve: scoring failed for {len(paths)} objects: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)
            self.stats.bump("failed", len(paths))
            return
        for outcome in outcomes:
            name = {"scored": "scored", "duplicate": "duplicate",
                    "refused": "refused"}.get(outcome.status, "failed")
            self.stats.bump("slices", outcome.n_slices)
            self.stats.bump(name)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            self._finish(outcome.path, outcome.status)

    def _finish(self, path: str, status: str) -> None:
        spooled = Path(path)
        try:
            if self.store is not None and status == "scored":
                header = read_qa_header(spooled)
                target = safe_child(self.store, str(header.study_uid), str(header.series_uid),
                                    str(header.sop_instance_uid))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(spooled, target)
            else:
                spooled.unlink(missing_ok=True)
        except (OSError, InputError) as error:
            print(f"deltaiqa-lite serve: cannot store {spooled.name}: {error}", file=sys.stderr)
            spooled.unlink(missing_ok=True)
