"""Group commit for SQLite: one writer thread, many concurrent callers, one transaction per batch.

SQLite allows one writer at a time, and a commit in WAL mode with ``synchronous=FULL`` costs an fsync.
One transaction per HTTP request would cap the API at the disk's fsync rate (ecosystem.md measured the
collapse to ~4k req/s even without fsync). Instead every write operation is queued to a dedicated
thread, which takes everything waiting (up to ``max_batch``), runs it inside one ``BEGIN IMMEDIATE``
transaction (each operation in its own SAVEPOINT, so one failing operation does not undo the others),
commits once, and only then answers every caller. An answer therefore always means "committed".

``BEGIN IMMEDIATE`` takes the write lock at the start of the transaction, so a CLI process writing to the
same database waits on ``busy_timeout`` instead of failing half-way with "database is locked"
(ecosystem.md: plain ``BEGIN`` lost updates and failed under concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kittiwake.errors import StoreError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

log = logging.getLogger(__name__)

_STOP = object()


class _OperationFailed(Exception):
    """An operation raised on the savepoint-free fast path: replay the batch with isolation."""


BUSY_TIMEOUT_MS = 10_000


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with Kittiwake's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    if synchronous not in {"FULL", "NORMAL", "EXTRA"}:
        raise ValueError(f"unsupported synchronous level {synchronous!r}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class GroupCommitWriter:
    """Runs write operations in batches on one thread; see the module docstring."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", max_batch: int = 512) -> None:
        self._path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        conn = connect(self._path, synchronous=self._synchronous)
        self._thread = threading.Thread(target=self._run, args=(conn,), name="kittiwake-sqlite-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish every operation already submitted, then close the connection."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    async def submit(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` inside the next group transaction; return its result once committed."""
        if self._thread is None:
            raise StoreError("the SQLite writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((operation, future, loop))
        return await future

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop_after = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop_after = True
                        break
                    batch.append(item)
                self._settle(self._execute(conn, batch))
                if stop_after:
                    return
        finally:
            conn.close()

    def _execute(self, conn: sqlite3.Connection, batch: list[Any]) -> list[tuple[Any, Any, BaseException | None]]:
        """Run the batch in one transaction. The fast path has no savepoints; if any operation raises,
        the transaction is rolled back and the batch replayed with a savepoint around each operation, so
        exactly the failing ones fail (the profile showed savepoints costing ~13% of create throughput)."""
        try:
            try:
                outcomes = self._run_batch(conn, batch, isolate=False)
            except _OperationFailed:
                conn.execute("ROLLBACK")
                outcomes = self._run_batch(conn, batch, isolate=True)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("group commit of %d operations failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"database write failed: {exc}")
            return [((future, loop), None, error) for _, future, loop in batch]
        self.batches += 1
        self.operations += len(batch)
        return outcomes

    @staticmethod
    def _run_batch(
        conn: sqlite3.Connection, batch: list[Any], *, isolate: bool
    ) -> list[tuple[Any, Any, BaseException | None]]:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for operation, future, loop in batch:
            if not isolate:
                try:
                    outcomes.append(((future, loop), operation(conn), None))
                except Exception as exc:
                    raise _OperationFailed from exc
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = operation(conn)
            except Exception as exc:  # the caller gets its own error; the batch goes on
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append(((future, loop), None, exc))
            else:
                conn.execute("RELEASE op")
                outcomes.append(((future, loop), result, None))
        return outcomes

    @staticmethod
    def _settle(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        for (future, loop), result, error in outcomes:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, items in by_loop.items():
            # A closed loop means nobody is waiting any more; the writes themselves stand.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():  # the caller went away (cancelled); the write itself stands
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
