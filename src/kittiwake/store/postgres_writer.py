"""Group commit for PostgreSQL: one writer task with its own connection, one transaction per batch.

The twin of :mod:`kittiwake.store.sqlite_writer`. A commit costs a round trip and a WAL flush, so one
transaction per HTTP request would cap creates at the single-insert rate (ecosystem.md: ~7k/s). Every
write operation is an async callable taking the batch's cursor; callers queue it with :meth:`submit`
and the writer task takes everything waiting (up to ``max_batch``), runs it in one transaction, commits
once, and only then resolves each caller's future, so an answer always means "committed".

Operations that are one statement each (:class:`Statement`) are sent in pipeline mode, a run of them in
one round trip. The fast path has no savepoints. When an operation raises, the transaction is rolled back and the batch
replayed with a SAVEPOINT around each operation, so exactly the failing operations fail. Deadlocks and
serialization failures (several processes writing the same sender rows in different orders) roll the
whole batch back and run it again after a short random pause.

An operation may ask for a notification (``notify=(channel, payload)``): after the batch ran, the
writer executes one ``pg_notify`` per distinct pair for the operations that succeeded, inside the same
transaction, so PostgreSQL delivers them to every listening process exactly when the rows commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import TupleRow

from kittiwake.errors import StoreError
from kittiwake.store.base import DuplicateError

T = TypeVar("T")
Cursor = AsyncCursor[TupleRow]
Operation = Callable[[Cursor], Awaitable[Any]]

log = logging.getLogger(__name__)

# Errors after which running the same transaction again may well succeed.
TRANSIENT = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure, psycopg.errors.LockNotAvailable)
BATCH_ATTEMPTS = 5


@dataclass(slots=True)
class _Item:
    operation: Operation
    future: asyncio.Future[Any]
    notify: tuple[str, str] | None
    # The sender row the operation locks first (``senders``), so batches lock rows in one global order.
    lock_key: str | None = None


@dataclass(slots=True)
class _Outcome:
    item: _Item
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Statement(Generic[T]):
    """A write of exactly one SQL statement: the writer pipelines a run of these (ecosystem.md: pipeline
    mode ~2.5x the rate of one round trip each). ``result`` maps the first row returned (None when none)
    and the row count to the caller's answer, and may raise (QueueFull) to fail the operation.

    Called with a cursor it is an ordinary operation, which is how the savepoint replay runs it.
    """

    sql: str
    params: Sequence[Any]
    result: Callable[[TupleRow | None, int], T]
    # Map a unique or foreign-key violation to DuplicateError (the caller's error, not the store's).
    duplicate_error: bool = False

    async def __call__(self, cursor: Cursor) -> T:
        try:
            await cursor.execute(self.sql, self.params)
        except psycopg.IntegrityError as exc:
            if self.duplicate_error:
                raise DuplicateError(str(exc)) from exc
            raise
        return await self.answer(cursor)

    async def answer(self, cursor: Cursor) -> T:
        row = await cursor.fetchone() if cursor.description is not None else None
        return self.result(row, cursor.rowcount)


def rowcount(_row: TupleRow | None, count: int) -> int:
    return count


def first_int(row: TupleRow | None, _count: int) -> int:
    return int(row[0]) if row is not None else 0


class _OperationFailed(Exception):
    """An operation raised on the savepoint-free fast path: replay the batch with isolation."""


class PgGroupCommitWriter:
    """Runs write operations in batches on one connection; see the module docstring."""

    def __init__(self, conninfo: str, *, max_batch: int = 512) -> None:
        self._conninfo = conninfo
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[TupleRow] | None = None
        self._stopping = False
        self.batches = 0
        self.operations = 0
        # The server process of the writer's connection: notifications it sent are this process's own.
        self.backend_pid: int | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._stopping = False
        await self._connection()
        self._task = asyncio.create_task(self._run(), name="kittiwake-postgres-writer")

    async def stop(self) -> None:
        """Finish every operation already submitted, then close the connection."""
        if self._task is None:
            return
        self._stopping = True
        self._queue.put_nowait(None)
        task, self._task = self._task, None
        await task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def submit(
        self,
        operation: Callable[[Cursor], Awaitable[T]],
        *,
        notify: tuple[str, str] | None = None,
        lock_key: str | None = None,
    ) -> T:
        """Run ``operation`` inside the next group transaction; return its result once committed.

        ``lock_key`` names the sender row the operation locks (if any). Each batch runs its operations in
        ``lock_key`` order (stable, so one sender's operations keep their order), so every process takes
        sender row locks in the same global order and batches of different processes cannot deadlock on
        them (bench/scaleout.py measured 2-4 deadlocks per 5 s, each costing a 1 s deadlock_timeout).
        """
        if self._task is None or self._stopping:
            raise StoreError("the PostgreSQL writer is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(operation, future, notify, lock_key))
        return await future

    # -- the writer task -----------------------------------------------------------------------------

    async def _connection(self) -> AsyncConnection[TupleRow]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
            self._conn = await AsyncConnection.connect(self._conninfo, autocommit=False)
            self.backend_pid = self._conn.info.backend_pid
            # A lock wait this long means contention: fail fast (LockNotAvailable is transient, the batch
            # is retried) rather than queue every caller behind it.
            await self._conn.execute("SET lock_timeout = '2s'")
            await self._conn.commit()
        return self._conn

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stop_after = False
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop_after = True
                    break
                batch.append(item)
            batch.sort(key=_lock_order)
            try:
                outcomes = await self._execute(batch)
            except BaseException as exc:  # never leave a caller waiting for ever
                error = StoreError(f"database write failed: {exc}")
                _settle([_Outcome(item, error=error) for item in batch])
                if not isinstance(exc, Exception):
                    raise
                log.exception("PostgreSQL group commit of %d operations failed", len(batch))
            else:
                _settle(outcomes)
            if stop_after:
                return

    async def _execute(self, batch: list[_Item]) -> list[_Outcome]:
        for attempt in range(BATCH_ATTEMPTS):
            last = attempt == BATCH_ATTEMPTS - 1
            conn = await self._connection()
            try:
                try:
                    if last:  # contention persists: isolate, so only the operations still failing fail
                        raise _OperationFailed
                    outcomes = await self._run_batch(conn, batch, isolate=False)
                except _OperationFailed as failed:
                    await conn.rollback()
                    if isinstance(failed.__cause__, TRANSIENT):
                        await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                        continue
                    outcomes = await self._run_batch(conn, batch, isolate=True)
                await _send_notifications(conn, outcomes)
                await conn.commit()
            except TRANSIENT:
                await _rollback_quietly(conn)
                if last:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                continue
            except psycopg.Error:
                await _rollback_quietly(conn)
                raise
            self.batches += 1
            self.operations += len(batch)
            return outcomes
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _run_batch(conn: AsyncConnection[TupleRow], batch: list[_Item], *, isolate: bool) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        cursor = conn.cursor()
        if not isolate:
            for run in _runs(batch):
                try:
                    if len(run) > 1 and isinstance(run[0].operation, Statement):
                        outcomes += await _pipelined(conn, run)
                    else:
                        outcomes += [_Outcome(item, await item.operation(cursor)) for item in run]
                except Exception as exc:
                    raise _OperationFailed from exc
            return outcomes
        for item in batch:
            await cursor.execute("SAVEPOINT op")
            try:
                result = await item.operation(cursor)
            except Exception as exc:  # the caller gets its own error; the batch goes on
                await cursor.execute("ROLLBACK TO SAVEPOINT op")
                await cursor.execute("RELEASE SAVEPOINT op")
                if isinstance(exc, psycopg.Error):
                    error: BaseException = StoreError(f"database write failed: {exc}")
                    error.__cause__ = exc
                else:
                    error = exc
                outcomes.append(_Outcome(item, error=error))
            else:
                await cursor.execute("RELEASE SAVEPOINT op")
                outcomes.append(_Outcome(item, result))
        return outcomes


def _lock_order(item: _Item) -> tuple[bool, str]:
    return (item.lock_key is None, item.lock_key or "")


def _runs(batch: list[_Item]) -> list[list[_Item]]:
    """The batch cut into runs of consecutive Statements and single other operations."""
    runs: list[list[_Item]] = []
    for item in batch:
        if runs and isinstance(item.operation, Statement) and isinstance(runs[-1][-1].operation, Statement):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


async def _pipelined(conn: AsyncConnection[TupleRow], run: list[_Item]) -> list[_Outcome]:
    """Send every statement of the run, then read every answer: one round trip for the lot."""
    outcomes: list[_Outcome] = []
    async with conn.pipeline() as pipeline:
        sent: list[tuple[_Item, Statement[Any], Cursor]] = []
        for item in run:
            statement = item.operation
            assert isinstance(statement, Statement)
            cursor = conn.cursor()
            await cursor.execute(statement.sql, statement.params)
            sent.append((item, statement, cursor))
        await pipeline.sync()
        for item, statement, cursor in sent:
            outcomes.append(_Outcome(item, await statement.answer(cursor)))
    return outcomes


async def _send_notifications(conn: AsyncConnection[TupleRow], outcomes: list[_Outcome]) -> None:
    pairs = sorted({o.item.notify for o in outcomes if o.error is None and o.item.notify is not None})
    if pairs:
        await conn.execute(
            "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)",
            ([c for c, _ in pairs], [p for _, p in pairs]),
        )


async def _rollback_quietly(conn: AsyncConnection[TupleRow]) -> None:
    if not conn.closed and not conn.broken:
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()


def _settle(outcomes: list[_Outcome]) -> None:
    for outcome in outcomes:
        future = outcome.item.future
        if future.done():  # the caller went away (cancelled); the write itself stands
            continue
        if outcome.error is None:
            future.set_result(outcome.result)
        else:
            future.set_exception(outcome.error)
