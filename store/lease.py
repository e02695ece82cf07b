"""One writer per shard: a lease per shard, with owner, host, pid and a heartbeat.

A writer takes a shard's lease before it clears or writes anything of that shard, and
gives it back after the shard's done marker. The lease is the Zarr group
``leases/<shard>`` whose attributes are owner, host, pid, rank, taken_at and heartbeat
(its ``zarr.json`` is the lease file). It is created exclusively (a hard link, which fails
when the file exists, on a local disk), so of two processes that want one shard, one gets
it and the other skips the shard. A background thread refreshes the heartbeat of every lease the process holds;
a lease whose heartbeat is older than ``timeout`` seconds belongs to a process that died
or hangs (on the same host, a holder whose pid is not running is dead at once), and is
taken over: it is first renamed away (atomic: of two takers only one
succeeds), then created afresh.

On an object store (s3://, gs://) there is no exclusive create: the lease is written,
read back after a short pause and kept only if it still names this owner. That narrows
the race, it does not close it; run one writer per rank there.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vidstore.store.feature_store import ensure_group, group_document, read_group_attributes


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Leases:
    """The leases one process holds on one store's shards."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, *, rank: int = 0, timeout: float = 300.0):
        self.fs, self.root, self.rank, self.timeout = fs, root, rank, float(timeout)
        self.owner = uuid.uuid4().hex
        self.held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.local = isinstance(fs, LocalFileSystem)

    def folder(self, shard: int) -> str:
        return f"{self.root}/leases/{shard:06d}"

    def path(self, shard: int) -> str:
        return f"{self.folder(shard)}/zarr.json"

    def _record(self) -> bytes:
        now = time.time()
        return group_document(
            {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(), "rank": self.rank, "taken_at": now, "heartbeat": now}
        )

    def read(self, shard: int) -> dict | None:
        """The lease of ``shard`` as written by its holder, or None (none, or unreadable)."""
        return read_group_attributes(self.fs, self.folder(shard))

    def is_stale(self, lease: dict | None) -> bool:
        """No heartbeat for ``timeout`` seconds, or a holder on this host that is not running."""
        if lease is None:
            return True
        try:
            if lease.get("host") == socket.gethostname() and not pid_running(int(lease["pid"])):
                return True
            return time.time() - float(lease["heartbeat"]) > self.timeout
        except (KeyError, TypeError, ValueError):
            return True

    def _create(self, shard: int) -> bool:
        path = self.path(shard)
        if self.local:  # written aside, then linked in place: exclusive, and never seen half-written
            tmp = f"{path}.tmp-{self.owner}"
            for _ in range(3):  # the folder may vanish under us when its last holder releases it
                os.makedirs(self.folder(shard), exist_ok=True)
                try:
                    with open(tmp, "wb") as f:
                        f.write(self._record())
                except FileNotFoundError:
                    continue
                try:
                    os.link(tmp, path)
                    return True
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
            return False
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, self._record())
        time.sleep(0.2)
        lease = self.read(shard)
        return lease is not None and lease.get("owner") == self.owner

    def acquire(self, shard: int) -> bool:
        """Take ``shard``'s lease; False when another live process holds it."""
        path = self.path(shard)
        ensure_group(self.fs, f"{self.root}/leases")
        if not self._create(shard):
            lease = self.read(shard)
            if lease is not None and lease.get("owner") == self.owner:
                return True
            if lease is None and self._create(shard):  # released in between
                return self._hold(shard)
            lease = lease or self.read(shard)
            if lease is None:  # there but unreadable (damaged): judged by its age
                try:
                    age = time.time() - self.fs.modified(path).timestamp()
                except (OSError, NotImplementedError, AttributeError):
                    age = 0.0
                if age <= self.timeout:
                    return False
            elif not self.is_stale(lease):
                return False
            aside = f"{path}.stale-{self.owner}"
            try:
                if self.local:
                    os.rename(path, aside)
                else:
                    self.fs.mv(path, aside)
            except (FileNotFoundError, OSError):
                return False  # another process took it over first
            if self.fs.exists(aside):
                self.fs.rm(aside)
            if not self._create(shard):
                return False
        return self._hold(shard)

    def _hold(self, shard: int) -> bool:
        with self._lock:
            self.held.add(shard)
        self._start_heartbeat()
        return True

    def holds(self, shard: int) -> bool:
        """Whether the lease file still names this process (it may have been taken over)."""
        lease = self.read(shard)
        return lease is not None and lease.get("owner") == self.owner

    def release(self, shard: int) -> None:
        with self._lock:  # not while a heartbeat rewrites it
            self.held.discard(shard)
            if self.holds(shard):
                try:
                    self.fs.rm(self.path(shard))
                    if self.local:  # an empty folder would be a member zarr cannot read
                        os.rmdir(self.folder(shard))
                except (FileNotFoundError, OSError):
                    pass  # another process has just made it again: its lease

    def _beat(self) -> None:
        with self._lock:
            for shard in sorted(self.held):
                self._beat_one(shard)

    def _beat_one(self, shard: int) -> None:
        lease = self.read(shard)
        if lease is None or lease.get("owner") != self.owner:
            return  # taken over: the writer finds out before its marker
        lease["heartbeat"] = time.time()
        try:
            if self.local:  # replaced whole, so a reader never sees it half-written
                tmp = f"{self.path(shard)}.tmp-{self.owner}"
                with open(tmp, "wb") as f:
                    f.write(group_document(lease))
                os.replace(tmp, self.path(shard))
            else:
                self.fs.pipe_file(self.path(shard), group_document(lease))
        except OSError:
            pass  # a full disk or a lost mount: the lease goes stale, another process takes over

    def _start_heartbeat(self) -> None:
        if self._thread is not None:
            return
        interval = max(0.05, self.timeout / 5)

        def loop() -> None:
            while not self._stop.wait(interval):
                self._beat()

        self._thread = threading.Thread(target=loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the heartbeat and give back every lease still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for shard in sorted(self.held):
            self.release(shard)
