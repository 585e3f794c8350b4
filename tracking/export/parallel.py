"""A full export on PostgreSQL split over worker processes (``tracking export --workers``).

The ordered queryset (oldest first: ``timestamp``, ``id``) is cut into contiguous ranges at
every ``step``-th row (one window query). The command and ``workers - 1`` processes forked
from it encode whole ranges (``tracking.export.records.encode_piece``); the command writes the pieces in
range order, so the text is byte for byte the serial export's. Every worker reads in the
snapshot the command exported (``pg_export_snapshot``, as ``pg_dump -j`` does): rows
committed during the export are left out by all of them, as by the serial export's single
query.

Memory stays bounded: at most ``window`` pieces (``step`` rows each) are being encoded or
waiting to be written at any time, and the payload caches are smaller than the serial
export's. Only the command uses this: the API export is one streaming generator in the web
process.
"""

from __future__ import annotations

import gc
import multiprocessing
import re
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import timezone as dt_timezone
from multiprocessing.connection import wait
from typing import Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import Q

from tracking.export.record import FORMATS
from tracking.export.records import encode_piece
from tracking.export.values import PayloadCache, iter_values, raw_reader_applies

UTC = dt_timezone.utc

ORDER = ("timestamp", "id")
STEP = 2000
# Distinct payloads each process keeps (PayloadCache): a quarter of the serial export's,
# so that two processes with distinct payloads on every row stay within the memory budget.
CACHED_PAYLOADS = 5000


def applies(queryset: Any, workers: int) -> bool:
    """Whether ``pieces`` can export ``queryset``: PostgreSQL (the raw reader), the export
    order, no enclosing transaction (the snapshot needs a transaction of its own) and
    ``fork`` (workers inherit the configured Django instead of setting it up again)."""

    return (
        workers > 1
        and tuple(queryset.query.order_by) == ORDER
        and raw_reader_applies(queryset)
        and not connections[queryset.db].in_atomic_block
        and "fork" in multiprocessing.get_all_start_methods()
    )


def boundaries(queryset: Any, step: int) -> list[tuple[Any, Any]]:
    """(timestamp, id) of every ``step``-th row of ``queryset`` in export order: each
    closes a range (the last range is open)."""

    try:
        inner, params = queryset.order_by().values_list(*ORDER).query.sql_with_params()
    except EmptyResultSet:  # nothing to split: one (empty) range
        return []
    connection = connections[queryset.db]
    ts, pk = (connection.ops.quote_name(c) for c in ORDER)
    sql = (
        f"SELECT {ts}, {pk} FROM (SELECT {ts}, {pk}, row_number() OVER"  # noqa: S608
        f" (ORDER BY {ts}, {pk}) AS rn FROM ({inner}) AS rows) AS numbered"
        f" WHERE rn %% %s = 0 ORDER BY rn"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, step))
        rows = cursor.fetchall()
    # A raw cursor on SQLite reads the stored UTC time naive.
    return [(ts if ts.tzinfo else ts.replace(tzinfo=UTC), pk) for ts, pk in rows]


def within(queryset: Any, low: tuple | None, high: tuple | None) -> Any:
    """The rows of ``queryset`` after ``low`` and up to ``high`` (inclusive) in export
    order. The plain timestamp bounds let PostgreSQL prune partitions and scan the index."""

    if low is not None:
        ts, pk = low
        queryset = queryset.filter(Q(timestamp__gt=ts) | Q(id__gt=pk), timestamp__gte=ts)
    if high is not None:
        ts, pk = high
        queryset = queryset.filter(Q(timestamp__lt=ts) | Q(id__lte=pk), timestamp__lte=ts)
    return queryset


def pieces(
    queryset: Any, fmt: str, *, workers: int, step: int | None = None
) -> Iterator[tuple[str, int]]:
    """(text, rows) of each range (``step`` rows, default ``STEP``) in order; the caller
    adds the CSV header or the JSON brackets and commas (``tracking.export.records.encode_piece``).

    ``workers`` processes encode: this one (between writes) and ``workers - 1`` forked
    ones. Call only where ``applies``.
    """

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    # A forked child must not share the parent's database sockets: each opens its own.
    connections.close_all()
    # A child flushes the standard streams when it exits: text buffered now would be
    # written once more by each of them.
    sys.stdout.flush()
    sys.stderr.flush()
    ctx = multiprocessing.get_context("fork")
    # What the workers inherit stays in pages shared with the parent only while no garbage
    # collection walks it (a full collection writes to every object): frozen for the export.
    gc.freeze()
    links: list[Any] = []
    procs: list[Any] = []
    try:
        for _ in range(workers - 1):
            link, theirs = ctx.Pipe()
            inherited = [*links, link]  # the parent's ends the worker gets a copy of
            proc = ctx.Process(target=_work, args=(queryset, fmt, theirs, inherited), daemon=True)
            proc.start()
            theirs.close()  # so that a worker's death reads as end of file here
            links.append(link)
            procs.append(proc)
        with transaction.atomic(using=queryset.db):
            with connections[queryset.db].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SELECT pg_export_snapshot()")
                (snapshot,) = cursor.fetchone()
            bounds = boundaries(queryset, step or STEP)
            ranges = [(*r, snapshot) for r in zip([None, *bounds], [*bounds, None], strict=True)]
            payloads = PayloadCache(CACHED_PAYLOADS)

            def here(task: tuple) -> tuple[str, int]:
                # already in the snapshot: this transaction exported it
                return _encode_range(within(queryset, *task[:2]), fmt, payloads)

            yield from _in_order(ranges, links, here, window=2 * workers)
        for link in links:
            link.send(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for link in links:
            link.close()
        gc.unfreeze()


def _in_order(
    tasks: list[tuple], links: list[Any], here: Callable[[tuple], tuple[str, int]], *, window: int
) -> Iterator[tuple[str, int]]:
    """Hand out ``tasks`` to idle workers, encode one ``here`` when all are busy (never
    more than ``window`` ahead of the piece the caller is writing), and yield the pieces
    in order."""
    idle = list(links)
    busy: dict[Any, int] = {}
    done: dict[int, tuple[str, int]] = {}
    sent = 0
    for index in range(len(tasks)):
        while index not in done:
            ahead = min(len(tasks), index + window)
            while idle and sent < ahead:
                link = idle.pop()
                link.send(tasks[sent])
                busy[link] = sent
                sent += 1
            ready = wait(list(busy), timeout=0) if busy else []
            if not ready and sent < ahead:
                done[sent] = here(tasks[sent])
                sent += 1
                continue
            for link in ready or wait(list(busy)):
                try:
                    outcome = cast(Any, link).recv()  # a worker's Connection
                except EOFError:  # killed from outside (e.g. out of memory)
                    raise RuntimeError("an export worker exited unexpectedly") from None
                idle.append(link)
                number = busy.pop(link)
                if isinstance(outcome, BaseException):
                    raise RuntimeError(f"export worker failed: {outcome}") from outcome
                done[number] = outcome
        yield done.pop(index)


# What pg_export_snapshot() returns, e.g. "00000003-0000001B-1".
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")


def _set_snapshot(snapshot: str) -> str:
    """``SET TRANSACTION SNAPSHOT`` with the id as a literal: a utility statement takes no
    parameters when Django binds them server-side (``OPTIONS["server_side_binding"]``). The
    id is checked against the form PostgreSQL exports before it is written into the SQL."""
    if not isinstance(snapshot, str) or not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    return f"SET TRANSACTION SNAPSHOT '{snapshot}'"


def _work(queryset: Any, fmt: str, link: Any, inherited: list[Any]) -> None:
    """A worker: encode ranges until told to stop, each in the parent's snapshot.

    ``inherited``: the parent's ends of this worker's pipe and of the earlier workers',
    closed here so that only the parent holds them: if it dies, every worker reads end of
    file (or a broken pipe) and exits instead of waiting for ever.
    """

    for other in inherited:
        other.close()
    # Ctrl-C reaches the whole process group: the parent stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One per worker: repeated payloads recur across ranges.
    payloads = PayloadCache(CACHED_PAYLOADS)
    snapshot_taken = False
    try:
        # One transaction for all the worker's ranges, in the parent's snapshot.
        with transaction.atomic(using=queryset.db):
            while (task := link.recv()) is not None:
                low, high, snapshot = task
                try:
                    if not snapshot_taken:
                        with connections[queryset.db].cursor() as cursor:
                            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                            cursor.execute(_set_snapshot(snapshot))
                        snapshot_taken = True
                    outcome: Any = _encode_range(within(queryset, low, high), fmt, payloads)
                except Exception as exc:  # reported to the parent, which stops the export
                    outcome = RuntimeError(f"{exc!r}\n{traceback.format_exc()}")
                link.send(outcome)
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    finally:
        connections.close_all()


def _encode_range(queryset: Any, fmt: str, payloads: PayloadCache) -> tuple[str, int]:
    # Chunks of 1,000 rows: the ranges are small, and so is each worker's memory.
    return encode_piece(
        iter_values(queryset, 1000, payloads=payloads, raw=True), fmt, payloads=payloads
    )
