"""DICOM Storage SCP: receive CT over the network (C-STORE), score it off the network thread.

Needs pynetdicom (the ``net`` extra: ``pip install deltaiqa-lite[net]``); it is
imported only here.

How one object travels::

    C-STORE (association thread)                      worker thread
    ----------------------------                      -------------
    association: calling AE allowed, called AE ours, under the association limit
    QA log failing (locked, disk full)? -> 0xA700 at once, cause on stderr
    write spool/.<SOP UID>.part, fsync
    SOP Class CT / Enhanced CT?    -> else refused, 0x0122
    header: Modality CT, UIDs valid -> else refused, 0xA900
      (refusal rows go to the worker's queue; with --ack-refused the object is
       kept in the refused/ quarantine and answered 0x0000)
    rename to spool/<SOP UID>.dcm, fsync the folder
    put the UID on the bounded queue --(full for queue_timeout s: 0xA700)
    answer 0x0000 Success                             take up to batch_size UIDs
                                                      score them in one batch
                                                      log them in one transaction
                                                      (synchronous=FULL: durable)
                                                      scored: move to store/<study>/<series>/<sop>.dcm
                                                              (or delete the spool file)
                                                      refused/error from the pixels: move to
                                                              refused/<sop>.dcm (kept: it was
                                                              acknowledged)
                                                      every rescan_s: spool files not queued
                                                      (left by a failed log write) again

Why spool to disk before answering: a Success status tells the scanner it may
forget the image. Writing it first (fsynced) means a crash, a SIGTERM or a
power loss after Success never loses it: leftovers in the spool are scored
first on the next start and rescanned while running. Nothing is deleted from
the spool before what replaces it (log row, stored or quarantined copy) is
durable. The network thread never touches the QA log: a locked or full log
cannot hold an association, it makes the node answer 0xA700 (Out of
Resources) until a write succeeds again, saying why on stderr.

Why the queue is still bounded (default 256 objects) although it only holds
UIDs: it keeps the backlog, and so the delay between acquisition and logged
score, bounded. When it is full the C-STORE handler blocks, which holds that
association and so slows the sender through TCP; if it stays full for
``queue_timeout`` seconds the object is answered 0xA700 so the sender retries
later, instead of the node taking unbounded disk or memory.

File names come only from UIDs that passed ``is_valid_uid`` (digits and single
dots); the final path is checked to lie inside the spool/store folder as a
second guard. Nothing the sender calls a file name or path is ever used. Files
and folders the node creates are private to its user (0600/0700) unless the
configuration grants its group read access.

C-STORE statuses used: 0x0000 kept (spooled for scoring, or quarantined with
``ack_refused``); 0x0122 SOP Class not supported (not CT Image Storage nor
Enhanced CT Image Storage); 0xA900 data set does not match SOP Class (Modality
not CT, invalid or mismatching UIDs); 0xC210 cannot understand (undecodable
data set); 0xA700 out of resources (queue full past the timeout, disk full,
QA log locked or failing).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
from deltaiqa_lite.qa.ingest import (DOSE, DUPLICATE, REFUSED, SCORED, FileOutcome, Ingestor, header_record,
                                     header_refused_kind)
from deltaiqa_lite.qa.log import QALogError, SliceRecord
from deltaiqa_lite.qa.tls import TLSSettings, guard_listener, server_context
from deltaiqa_lite.read.rdsr import RDSR_SOP_CLASSES

STATUS_SUCCESS = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_DATASET_MISMATCH = 0xA900
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC210
LOOPBACK = "127.0.0.1"
QUARANTINE_SUBFOLDER = "refused"
PART_SUFFIX = ".part"


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
        Our AE title; associations calling another title are rejected.
    allowed_aets : tuple of str or None
        Calling AE titles allowed to associate; None accepts any.
    spool_dir : path
        Where received objects wait for scoring (must survive restarts).
    store_dir : path or None
        Keep scored objects under ``<study>/<series>/<sop>.dcm``; None deletes them.
    quarantine_dir : path or None
        Where acknowledged objects that were refused or could not be scored are
        kept as ``<sop>.dcm`` (their reason is in the QA log); default
        ``refused`` beside the spool folder.
    queue_size, queue_timeout_s : int, float
        Back-pressure (see module docstring).
    batch_size : int
        Objects scored per batch by the worker.
    ack_refused : bool
        Answer refused objects 0x0000 instead of a failure status (and keep them
        in the quarantine folder, since Success tells the sender it may forget them).
    grace_s : float
        On stop, how long to let open associations finish before aborting them.
    max_associations : int
        Concurrent associations.
    rescan_s : float
        How often the worker looks for spool files nobody is working on (left by
        a failed log write) and retries them.
    file_mode, dir_mode : int
        Permissions of the files and folders the node creates (0600/0700: private
        to the node's user; 0640/0750 gives its group read access).
    tls : TLSSettings or None
        DICOM over TLS (:mod:`deltaiqa_lite.qa.tls`); None listens in plain TCP.
    """

    spool_dir: Path
    host: str = LOOPBACK
    port: int = 11112
    ae_title: str = "DELTAIQA"
    allowed_aets: tuple[str, ...] | None = None
    store_dir: Path | None = None
    quarantine_dir: Path | None = None
    queue_size: int = 256
    queue_timeout_s: float = 30.0
    batch_size: int = 8
    ack_refused: bool = False
    grace_s: float = 10.0
    max_associations: int = 10
    rescan_s: float = 10.0
    file_mode: int = 0o600
    dir_mode: int = 0o700
    tls: TLSSettings | None = None


@dataclass
class ServeStats:
    """Counters of a running receiver (thread-safe increments via ``bump``)."""

    received: int = 0
    refused: int = 0
    rejected_full: int = 0
    rejected_log: int = 0
    scored: int = 0
    failed: int = 0
    duplicate: int = 0
    dose_reports: int = 0
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


def invalid_uid_key(uid: str) -> str:
    """What the log stores for a SOP Instance UID that is not a valid UID.

    Stored, not dropped: the log's unique index on the UID then turns a resend of
    the same broken object into no new row, so a misbehaving sender cannot grow
    the log without bound. The raw text is not stored (it may be huge or hold
    control characters); a digest of it is.
    """
    return "invalid:" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def fsync_folder(folder: Path) -> None:
    """Make a rename or creation inside ``folder`` durable (POSIX: fsync the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_folders(folder: Path, mode: int) -> None:
    """``mkdir -p`` giving every folder it creates ``mode`` (pathlib's parents=True does not)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            pass


def durable_move(source: Path, target: Path, *, dir_mode: int = 0o700) -> None:
    """Move ``source`` to ``target`` so that the target is on disk before the source goes.

    Same file system: rename, then fsync the target folder (and the source folder,
    so the old name cannot come back). Across file systems: copy to a temporary
    name beside the target, fsync, rename, fsync the folder, then unlink the source.
    """
    make_folders(target.parent, dir_mode)
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        temporary = target.with_name(f".{target.name}{PART_SUFFIX}")
        with source.open("rb") as reader, temporary.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
            writer.flush()
            os.fsync(writer.fileno())
        os.chmod(temporary, source.stat().st_mode & 0o777)
        os.replace(temporary, target)
        fsync_folder(target.parent)
        source.unlink()
        fsync_folder(source.parent)
        return
    fsync_folder(target.parent)
    if source.parent != target.parent:
        fsync_folder(source.parent)


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
        self.quarantine = (Path(config.quarantine_dir) if config.quarantine_dir is not None
                           else self.spool.parent / QUARANTINE_SUBFOLDER)
        self._queue: queue.Queue[str] = queue.Queue(maxsize=max(1, config.queue_size))
        # Rows decided on the network thread (refusals), written by the worker.
        self._rows: queue.Queue[SliceRecord] = queue.Queue(maxsize=4096)
        self._unwritten_rows: list[SliceRecord] = []
        self._queued: set[str] = set()
        # UIDs of ``_queued`` that a second association stored again and answered Success.
        self._resent: set[str] = set()
        self._queued_lock = threading.Lock()
        self._part_counter = itertools.count()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._server = None
        self._ae = None
        self.address: tuple[str, int] | None = None
        # Why the QA log cannot be written right now (None when it can).
        self._log_trouble: str | None = None
        self._last_trouble_note = 0.0

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
        # Bad TLS files are a start-up error, before anything is created or bound.
        ssl_context = server_context(self.config.tls) if self.config.tls is not None else None
        for folder in (self.spool, self.store, self.quarantine):
            if folder is not None:
                make_folders(folder, self.config.dir_mode)
        self._check_writable()
        self._clean_stale_parts()
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        ae.require_called_aet = True
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
        self._worker = threading.Thread(target=self._work, name="deltaiqa-score", daemon=True)
        self._worker.start()
        try:
            self._server = ae.start_server((self.config.host, self.config.port), block=False,
                                           evt_handlers=handlers)
        except OSError as error:
            self._stopping.set()
            raise ServeError(f"cannot listen on {self.config.host}:{self.config.port}: "
                             f"{error.strerror or error}") from error
        if ssl_context is not None:
            guard_listener(self._server, ssl_context)
        self._ae = ae
        host, port = self._server.server_address[:2]
        self.address = (host, port)
        return self.address

    def _check_writable(self) -> None:
        """Refuse to start when a folder the node writes into is read-only (one line, not one
        per object on every rescan)."""
        for what, folder in (("spool", self.spool), ("store", self.store),
                             ("quarantine", self.quarantine)):
            if folder is None:
                continue
            try:  # a real write: permission bits alone do not tell (root, read-only mounts)
                with tempfile.TemporaryFile(dir=folder, prefix=".deltaiqa-probe-"):
                    pass
            except OSError as error:
                raise ServeError(f"{folder}: the {what} folder cannot be written "
                                 f"({error.strerror or error})") from error

    def _clean_stale_parts(self) -> None:
        """Temporary files of writes cut short by a kill: never acknowledged, so never needed.

        The spool and the quarantine folder only (flat folders); the store is not walked
        at every start, since it may hold millions of objects.
        """
        for folder in (self.spool, self.quarantine):
            if not folder.is_dir():
                continue
            for stale in folder.glob(f".*{PART_SUFFIX}"):
                try:
                    stale.unlink()
                except OSError as error:
                    print(f"deltaiqa-lite serve: cannot remove stale {stale.name}: "
                          f"{error.strerror or error}", file=sys.stderr)

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

    @property
    def log_trouble(self) -> str | None:
        """Why the QA log cannot be written now, or None."""
        return self._log_trouble

    # -- network thread handlers
    def _on_echo(self, event) -> int:
        return STATUS_SUCCESS

    def _on_rejected(self, event) -> None:
        # pynetdicom does not say which check failed: redo them in its order (the last
        # failing one wins there, so the association limit is reported first here).
        assoc = event.assoc
        requestor = assoc.requestor
        called = str(getattr(requestor.primitive, "called_ae_title", "") or "").strip()
        active = [a for a in assoc.ae.active_associations if a.is_acceptor]
        if len(active) > assoc.ae.maximum_associations:
            why = (f"association limit reached ({assoc.ae.maximum_associations} open; "
                   "--max-associations)")
        elif called != self.config.ae_title:
            why = f"called AE {called!r} is not this node's {self.config.ae_title!r}"
        elif (self.config.allowed_aets is not None
              and str(requestor.ae_title).strip() not in self.config.allowed_aets):
            why = f"calling AE {requestor.ae_title!r} not allowed"
        else:
            why = "rejected by the association negotiation"
        print(f"deltaiqa-lite serve: association from {requestor.address} rejected ({why})",
              file=sys.stderr, flush=True)

    def _note_trouble(self, sop: str) -> None:
        now = time.monotonic()
        if now - self._last_trouble_note >= 5.0:  # once per 5 s, not once per object
            self._last_trouble_note = now
            print(f"deltaiqa-lite serve: answering 0xA700 Out of Resources (object {sop} and "
                  f"others): {self._log_trouble}", file=sys.stderr, flush=True)

    def _queue_row(self, record: SliceRecord) -> None:
        try:
            self._rows.put_nowait(record)
        except queue.Full:
            # Only when the log has been failing for thousands of refusals: say so.
            print(f"deltaiqa-lite serve: refusal of {record.sop_instance_uid} not logged "
                  f"(log backlog full): {record.reason}", file=sys.stderr, flush=True)

    def _refuse(self, header: QAHeader, reason: str, status: int, peer: str,
                partial: Path | None, key: str) -> int:
        self._queue_row(header_record(header, source="serve", status="refused", file_name=None,
                                      reason=f"{reason} (from {peer})",
                                      refused_kind=header_refused_kind(header)))
        self.stats.bump("refused")
        if self.config.ack_refused and partial is not None:
            # Success tells the sender it may forget the object: keep it.
            try:
                durable_move(partial, self.quarantine / f"{key}.dcm",
                             dir_mode=self.config.dir_mode)
            except OSError as error:
                partial.unlink(missing_ok=True)
                print(f"deltaiqa-lite serve: cannot keep refused {key}: "
                      f"{error.strerror or error}", file=sys.stderr, flush=True)
                return STATUS_OUT_OF_RESOURCES
            return STATUS_SUCCESS
        if partial is not None:
            partial.unlink(missing_ok=True)
        return STATUS_SUCCESS if self.config.ack_refused else status

    def _spool_partial(self, event, key: str) -> Path:
        # One name per store operation: two associations sending the same UID at once
        # must not write into (or delete) each other's partial file.
        partial = self.spool / f".{key}.{os.getpid()}-{next(self._part_counter)}{PART_SUFFIX}"
        data = event.encoded_dataset(include_meta=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.config.file_mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before anything is answered
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return partial

    def _on_store(self, event) -> int:
        request = event.request
        sop_class = str(request.AffectedSOPClassUID or "")
        sop = str(request.AffectedSOPInstanceUID or "")
        peer = event.assoc.requestor.ae_title
        if self._log_trouble is not None:
            self.stats.bump("rejected_log")
            self._note_trouble(sop)
            return STATUS_OUT_OF_RESOURCES
        valid = is_valid_uid(sop)
        key = sop if valid else invalid_uid_key(sop)
        try:
            partial = self._spool_partial(event, key)
        except OSError as error:
            cause = ("the disk is full" if error.errno == errno.ENOSPC
                     else error.strerror or str(error))
            print(f"deltaiqa-lite serve: cannot spool {key} into {self.spool}: {cause}; "
                  "answered 0xA700 Out of Resources", file=sys.stderr, flush=True)
            return STATUS_OUT_OF_RESOURCES
        if not valid:
            return self._refuse(QAHeader(sop_class_uid=sop_class or None, sop_instance_uid=key),
                                f"(0000,1000) Affected SOP Instance UID {sop[:80]!r} is not a "
                                "valid UID", STATUS_DATASET_MISMATCH, peer, partial, key)
        try:
            header = read_qa_header(partial)
        except InputError as error:
            partial.unlink(missing_ok=True)
            self._queue_row(SliceRecord(source="serve", status="error", sop_instance_uid=sop,
                                        sop_class_uid=sop_class,
                                        reason=f"{error.reason} (from {peer})"))
            self.stats.bump("failed")
            return STATUS_CANNOT_UNDERSTAND
        reason, status = None, STATUS_DATASET_MISMATCH
        if sop_class in RDSR_SOP_CLASSES:
            # A dose report (or an SR that may be one): the ingestor reads or refuses it.
            if header.sop_instance_uid != sop:
                reason = (f"(0008,0018) SOP Instance UID {header.sop_instance_uid!r} does not match "
                          f"the C-STORE request's {sop!r}")
        elif sop_class not in CT_SOP_CLASSES:
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
            if header.sop_instance_uid != sop:
                header = QAHeader(**(header.as_dict() | {"sop_instance_uid": sop}))
            return self._refuse(header, reason, status, peer, partial, key)
        final = safe_child(self.spool, sop)
        # The claim and the rename happen under one lock, so that a resend of the same
        # UID on another association (the sender timed out and retried) is either seen
        # by the first association before it gives up, or arrives after it: the first
        # never deletes a file that another association has answered Success for.
        try:
            with self._queued_lock:
                already = sop in self._queued
                os.replace(partial, final)
                self._queued.add(sop)
                if already:
                    self._resent.add(sop)
            fsync_folder(self.spool)
        except OSError as error:
            print(f"deltaiqa-lite serve: cannot spool {sop}: {error.strerror or error}",
                  file=sys.stderr, flush=True)
            partial.unlink(missing_ok=True)
            if final.exists():
                # Renamed, only the folder fsync failed: the rescan takes it (it may be
                # another association's acknowledged copy, so it is never deleted here).
                with self._queued_lock:
                    if not already:
                        self._queued.discard(sop)
            return STATUS_OUT_OF_RESOURCES
        if already:
            # A resend while the first copy still waits: the file was replaced, the
            # queue already holds the UID (or the rescan takes it, see below).
            self.stats.bump("received")
            return STATUS_SUCCESS
        try:
            self._queue.put(sop, timeout=self.config.queue_timeout_s)
        except queue.Full:
            with self._queued_lock:
                self._queued.discard(sop)
                if sop in self._resent:
                    # Another association answered Success for this file meanwhile: it
                    # stays in the spool, unclaimed, and the next rescan scores it.
                    self._resent.discard(sop)
                else:
                    final.unlink(missing_ok=True)
            self.stats.bump("rejected_full")
            return STATUS_OUT_OF_RESOURCES
        self.stats.bump("received")
        return STATUS_SUCCESS

    # -- worker thread
    def _take_batch(self, wait_s: float) -> list[str]:
        try:
            first = self._queue.get(timeout=wait_s)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.config.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _set_trouble(self, cause: str | None) -> None:
        if cause is not None and self._log_trouble is None:
            print(f"deltaiqa-lite serve: {cause}; answering 0xA700 Out of Resources until the "
                  "QA log can be written again (received objects wait in the spool)",
                  file=sys.stderr, flush=True)
        elif cause is None and self._log_trouble is not None:
            print("deltaiqa-lite serve: the QA log can be written again; accepting objects",
                  file=sys.stderr, flush=True)
        self._log_trouble = cause

    def _write_rows(self) -> None:
        """Write refusal rows queued by the network thread (kept for a retry on failure)."""
        while True:
            try:
                self._unwritten_rows.append(self._rows.get_nowait())
            except queue.Empty:
                break
        if not self._unwritten_rows:
            return
        try:
            self.ingestor.log.record(self._unwritten_rows)
        except DeltaIQAError as error:
            self._set_trouble(str(error))
            return
        self._unwritten_rows = []

    def _unclaimed_spool_files(self) -> list[str]:
        """Spool files no queue entry stands for: left by a failed log write, or a crash."""
        with self._queued_lock:
            claimed = set(self._queued)
        found = []
        for path in sorted(self.spool.glob("*.dcm")):
            if path.stem not in claimed:
                found.append(path.stem)
        with self._queued_lock:
            self._queued.update(found)
        return found

    def _work(self) -> None:
        next_rescan = 0.0  # at once: objects acknowledged before a crash or kill come first
        while True:
            self._write_rows()
            now = time.monotonic()
            if now >= next_rescan:
                next_rescan = now + self.config.rescan_s
                if self._log_trouble is not None and not self._unwritten_rows:
                    try:
                        self.ingestor.log.probe()
                        self._set_trouble(None)
                    except DeltaIQAError as error:
                        self._set_trouble(str(error))
                if self._log_trouble is None:
                    leftovers = self._unclaimed_spool_files()
                    for start in range(0, len(leftovers), self.config.batch_size):
                        self._ingest(leftovers[start:start + self.config.batch_size])
            batch = self._take_batch(0.2)
            if batch:
                self._ingest(batch)
            elif self._stopping.is_set():
                self._write_rows()
                return

    def _ingest(self, sops: list[str]) -> None:
        paths = [str(self.spool / f"{sop}.dcm") for sop in sops]
        try:
            present = [p for p in paths if os.path.exists(p)]
            outcomes = self.ingestor.process(present, names={p: None for p in present})
        except QALogError as error:
            # The files stay in the spool; the next rescan tries them again.
            self._set_trouble(str(error))
            with self._queued_lock:
                self._queued.difference_update(sops)
                self._resent.difference_update(sops)
            return
        except Exception as error:  # noqa: BLE001 - a bug must not kill the receiver
            print(f"deltaiqa-lite serve: scoring failed for {len(paths)} objects (kept in the "
                  f"spool): {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            self.stats.bump("failed", len(paths))
            with self._queued_lock:
                self._queued.difference_update(sops)
                self._resent.difference_update(sops)
            return
        if self._log_trouble is not None:
            self._set_trouble(None)
        for outcome in outcomes:
            name = {SCORED: "scored", DUPLICATE: "duplicate", REFUSED: "refused", DOSE: "dose_reports"}.get(
                outcome.status, "failed")
            self.stats.bump("slices", outcome.n_slices)
            self.stats.bump(name)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            self._finish(outcome.path, outcome.status, outcome.sop_instance_uid)
        with self._queued_lock:
            self._queued.difference_update(sops)
            self._resent.difference_update(sops)

    def _finish(self, path: str, status: str, sop: str | None) -> None:
        """Put the spool file where it is kept, now that its log row is durable."""
        spooled = Path(path)
        try:
            if status == DUPLICATE and sop:
                # Logged before (e.g. a crash between the log commit and the move): keep the
                # copy where the first attempt would have put it.
                status = {"ok": SCORED, "refused": REFUSED}.get(
                    self.ingestor.log.sop_status(sop) or "", status)
            if status in (SCORED, DOSE):
                if self.store is None:
                    spooled.unlink(missing_ok=True)
                    return
                header = read_qa_header(spooled)
                target = safe_child(self.store, str(header.study_uid), str(header.series_uid),
                                    str(header.sop_instance_uid))
            elif status == DUPLICATE:
                spooled.unlink(missing_ok=True)
                return
            else:
                # Acknowledged but refused or unscorable (scout, truncated, Rows 0): the
                # sender may have forgotten it, so it is kept, never deleted.
                target = safe_child(self.quarantine, sop if sop and is_valid_uid(sop)
                                    else spooled.stem)
            durable_move(spooled, target, dir_mode=self.config.dir_mode)
        except (OSError, InputError, QALogError) as error:
            # Left in the spool: the next rescan finds it logged and tries the move again.
            print(f"deltaiqa-lite serve: cannot store {spooled.name} (kept in the spool): "
                  f"{getattr(error, 'strerror', None) or error}", file=sys.stderr, flush=True)
