"""Watch folder: poll, wait until each file is completely written, score by series, log.

No new dependency: plain polling with ``os.scandir`` (inotify is Linux-only and
misses files written over SMB/NFS, which is how scanners export).

Rules, in the order a file meets them:

1. Hidden files, ``DICOMDIR`` and names ending in ``.part``/``.tmp`` are
   ignored (senders write under such names and rename when done).
2. Size-stable: a file is ready once its size and mtime have not changed for
   ``settle_s`` seconds across polls and (on Linux, where a read lease tells)
   no process has it open for writing, so a file that arrives in pieces is
   read once, complete.
   A file that cannot be read may still be being written by a writer that
   paused longer than ``settle_s``: its error is logged, and the file moved to
   ``failed/``, only once it has stayed unchanged for ``error_settle_s``; a
   file that changes or is opened for writing after it was read is never
   archived (the new version is read again).
3. A file version (relative path, size, mtime) already in the log's ``inputs``
   table was dealt with before: it is not looked at again (a failed file is
   recorded once with its reason, never retried in a loop). An object whose
   SOP Instance UID is already logged is not scored again (restart safety).
4. Ready files are grouped by series and each series is scored in one batch
   and logged in one transaction; only then are the files moved to the
   archive. A crash at any point loses nothing: unlogged files are still in
   the folder and are picked up on the next start, logged ones are skipped.
5. Privacy: folder names may carry patient names. Unless ``log_paths`` is
   set, the log keeps only the file name (``slices.file_name``) and a SHA-256
   digest of the relative path as the key of ``inputs``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.qa.header import QAHeader
from deltaiqa_lite.qa.serve import make_folders
from deltaiqa_lite.read.names import display_text
from deltaiqa_lite.qa.ingest import (
    DUPLICATE,
    ERROR,
    REFUSED,
    SCORED,
    FileOutcome,
    Ingestor,
)

IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".filepart")
FAILED_SUBFOLDER = "failed"


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float
    retry_at: float = 0.0  # an unreadable file waits this long before it is tried again


def open_for_writing(path: str) -> bool | None:
    """Whether another process has ``path`` open for writing (None: the OS cannot tell).

    Linux refuses a read lease (``F_SETLEASE``) on a file open for writing anywhere;
    the lease is dropped at once. Needs leases enabled, a local file system, and
    that we own the file (or CAP_LEASE); otherwise the answer is None and only
    size and mtime are watched.
    """
    import fcntl

    if not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as error:
        return True if error.errno in (errno.EAGAIN, errno.EBUSY) else None
    else:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(descriptor)


@dataclass
class WatchStats:
    """Counts since the watcher started."""

    scored: int = 0
    refused: int = 0
    error: int = 0
    duplicate: int = 0
    dose: int = 0
    slices: int = 0
    polls: int = 0
    archived: int = 0
    outcomes: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        self.slices += outcome.n_slices


class FolderWatcher:
    """Poll ``folder`` and ingest files once they are complete.

    Parameters
    ----------
    folder : path
        The watched folder (walked recursively).
    ingestor : Ingestor
    archive : path, optional
        Move files here after they are logged (scored: same relative path;
        refused or failed: under ``failed/``). Must not be inside ``folder``.
    settle_s : float, default 2.0
        How long size and mtime must stay unchanged before a file is read.
    batch_files : int, default 256
        At most this many files per series batch (bounds memory on huge series).
    clock : callable, optional
        Monotonic clock (tests may pass their own).
    error_settle_s : float, default 30.0
        How long an unreadable file must stay unchanged before its error is
        logged and it is archived under ``failed/`` (a writer may only have paused).
    log_paths : bool, default False
        Store the path relative to the folder in the log and print it; by default
        only the file name is stored and printed (folder names may carry PHI).
    dir_mode : int, default 0o700
        Permissions of archive folders the watcher creates.
    """

    def __init__(self, folder: str | os.PathLike[str], ingestor: Ingestor, *,
                 archive: str | os.PathLike[str] | None = None, settle_s: float = 2.0,
                 batch_files: int = 256, clock: Callable[[], float] = time.monotonic,
                 on_outcome: Callable[[FileOutcome], None] | None = None,
                 error_settle_s: float = 30.0, log_paths: bool = False,
                 dir_mode: int = 0o700) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise InputError(str(folder), "watch folder does not exist or is not a folder")
        self.archive = Path(archive).resolve() if archive is not None else None
        if self.archive is not None and (self.archive == self.folder
                                         or self.folder in self.archive.parents):
            raise InputError(str(archive), "archive folder must not be inside the watched folder")
        self.ingestor = ingestor
        self.settle_s = float(settle_s)
        self.batch_files = max(1, int(batch_files))
        self.clock = clock
        self.on_outcome = on_outcome
        self.error_settle_s = max(float(error_settle_s), self.settle_s)
        self.log_paths = bool(log_paths)
        self.dir_mode = dir_mode
        self.stats = WatchStats()
        self._pending: dict[str, _Pending] = {}
        self._done: set[tuple[str, int, int]] = set()

    # -- scanning
    def _scan(self) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        stack = [self.folder]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue  # a sub-folder removed while we walk: next poll sees the new state
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.upper() == "DICOMDIR" or name.lower().endswith(
                        IGNORED_SUFFIXES):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        found[entry.path] = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
        return found

    def ready_files(self) -> list[str]:
        """Scan once; return files that are complete and not yet dealt with."""
        now = self.clock()
        found = self._scan()
        ready: list[str] = []
        for path in list(self._pending):
            if path not in found:
                del self._pending[path]  # removed or renamed before it settled
        for path, st in sorted(found.items()):
            rel = self.relative(path)
            key = (self.input_key(rel), st.st_size, st.st_mtime_ns)
            if key in self._done:
                continue
            if self.ingestor.log.input_seen(*key):
                self._done.add(key)
                self._archive_logged(path, rel)
                continue
            pending = self._pending.get(path)
            if pending is None or (pending.size, pending.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._pending[path] = _Pending(st.st_size, st.st_mtime_ns, now)
                continue
            if now - pending.stable_since < self.settle_s or now < pending.retry_at:
                continue
            if open_for_writing(path):
                pending.stable_since = now  # still being written, however quiet it looks
                continue
            ready.append(path)
        return ready

    def input_key(self, rel: str) -> str:
        """What the ``inputs`` table stores for a relative path (a digest unless ``log_paths``)."""
        if self.log_paths:
            return display_text(rel)
        # The digest of the raw bytes: lossless for any file name.
        return "sha256:" + hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()

    def display_name(self, path: str) -> str:
        """What the log and messages show for a file: relative path, or only its name.

        A name that is not UTF-8 is shown with its undecodable bytes as ``\\xNN``
        (:func:`deltaiqa_lite.read.names.display_text`): SQLite and terminals take it.
        """
        return display_text(self.relative(path) if self.log_paths else os.path.basename(path))

    def relative(self, path: str) -> str:
        """Path relative to the watched folder, '/'-separated (what the log stores)."""
        return Path(path).relative_to(self.folder).as_posix()

    # -- processing
    def poll_once(self) -> list[FileOutcome]:
        """One poll: find ready files, ingest them series by series, archive them."""
        self.stats.polls += 1
        ready = self.ready_files()
        if not ready:
            return []
        headers: dict[str, QAHeader | InputError] = {}
        groups: dict[str, list[str]] = {}
        for path in ready:
            header = self.ingestor.read_header(path)
            headers[path] = header
            series = header.series_uid if isinstance(header, QAHeader) else None
            groups.setdefault(series or "", []).append(path)
        outcomes: list[FileOutcome] = []
        for series in sorted(groups):
            files = groups[series]
            for start in range(0, len(files), self.batch_files):
                chunk = files[start:start + self.batch_files]
                stats = {p: os.stat(p) for p in chunk if os.path.exists(p)}
                chunk = [p for p in chunk if p in stats]
                names = {p: self.display_name(p) for p in chunk}
                now = self.clock()
                young = {p for p in chunk if p in self._pending
                         and now - self._pending[p].stable_since < self.error_settle_s}
                results = self.ingestor.process(chunk, names=names, headers=headers,
                                                defer_errors=young)
                for outcome in results:
                    st = stats[outcome.path]
                    if outcome.status == ERROR and outcome.path in young:
                        # Maybe a writer that paused: look again once it has been quiet
                        # for error_settle_s (or at once if it changes).
                        self._pending[outcome.path].retry_at = (
                            self._pending[outcome.path].stable_since + self.error_settle_s)
                        continue
                    if self._changed_since(outcome.path, st):
                        continue  # a new version: read again, never archived half-written
                    key = self.input_key(self.relative(outcome.path))
                    self.ingestor.log.record_input(key, st.st_size, st.st_mtime_ns,
                                                   outcome.status, outcome.reason,
                                                   outcome.sop_instance_uid)
                    self._done.add((key, st.st_size, st.st_mtime_ns))
                    self._pending.pop(outcome.path, None)
                    self.stats.add(outcome)
                    if self.on_outcome is not None:
                        self.on_outcome(outcome)
                    self._archive(outcome)
                    outcomes.append(outcome)
        return outcomes

    def _changed_since(self, path: str, st: os.stat_result) -> bool:
        """Whether ``path`` was written to after ``st`` was taken (or is open for writing)."""
        try:
            now = os.stat(path)
        except OSError:
            return True
        if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._pending[path] = _Pending(now.st_size, now.st_mtime_ns, self.clock())
            return True
        if open_for_writing(path):
            self._pending[path] = _Pending(now.st_size, now.st_mtime_ns, self.clock())
            return True
        return False

    def _archive_target(self, rel: str, failed: bool) -> Path:
        assert self.archive is not None
        base = self.archive / FAILED_SUBFOLDER if failed else self.archive
        target = base / rel
        counter = 1
        while target.exists():
            target = target.with_name(f"{Path(rel).name}.{counter}")
            counter += 1
        return target

    def _archive(self, outcome: FileOutcome) -> None:
        if self.archive is None:
            return
        failed = outcome.status in (REFUSED, ERROR)
        self._move(outcome.path, self._archive_target(self.relative(outcome.path), failed))

    def _archive_logged(self, path: str, rel: str) -> None:
        """A file the log already holds but that is still here (crash before the move)."""
        if self.archive is None:
            return
        row = self.ingestor.log.execute("SELECT status FROM inputs WHERE path = ?",
                                        [self.input_key(rel)])
        failed = bool(row) and row[0][0] in (REFUSED, ERROR)
        self._move(path, self._archive_target(rel, failed))

    def _move(self, source: str, target: Path) -> None:
        try:
            make_folders(target.parent, self.dir_mode)
            shutil.move(source, target)
            self.stats.archived += 1
        except OSError as error:
            # Logged already, so nothing is lost; the next poll tries the move again.
            print(f"deltaiqa-lite watch: cannot archive {self.display_name(source)}: "
                  f"{error.strerror or error}", file=sys.stderr)

    def run(self, stop: threading.Event, *, poll_s: float = 1.0, once: bool = False) -> WatchStats:
        """Poll until ``stop`` is set (or, with ``once``, until nothing is pending)."""
        while not stop.is_set():
            self.poll_once()
            if once and not self._pending:
                break
            stop.wait(poll_s)
        return self.stats


__all__ = ["DUPLICATE", "ERROR", "REFUSED", "SCORED", "FolderWatcher", "WatchStats"]
