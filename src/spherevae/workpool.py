"""A process pool that always ends: one pipe per worker, nothing shared between them.

``multiprocessing.Pool`` loses a task whose worker dies: when the kernel's OOM killer
took a sweep worker mid-run, ``imap_unordered`` waited for its result for ever and the
sweep never ended. Its workers also share queues guarded by process-shared locks, so
stopping them relies on sentinels passing through those queues.

:class:`WorkerPool` gives each spawned worker its own duplex pipe and hands out one
item at a time, so the parent never waits on a lock a worker can hold. It watches
each worker's process sentinel: a worker that dies is reported as a
:class:`WorkerFailure` for the item it was running and replaced. Leaving the ``with``
block on an exception (``KeyboardInterrupt`` included) terminates every worker
(SIGTERM, then SIGKILL after ``grace`` seconds) before the exception goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["WorkerFailure", "WorkerPool"]

T = TypeVar("T")
R = TypeVar("R")
_PENDING = object()  # "no outcome yet"; None is a valid result of fn


@dataclass(frozen=True)
class WorkerFailure:
    """Why an item produced no result: the worker raised, or the worker process died."""

    message: str


def _worker_main(conn: Connection, fn: Callable[[Any], Any], env: Mapping[str, str]) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the parent alone decides
    # what stops, and it stops every worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    while True:
        try:
            item = conn.recv()
        except EOFError:  # the parent is gone
            return
        if item is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(item))
        except BaseException:  # reported to the parent, which decides; the worker goes on
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError):  # an unpicklable result
            conn.send(("error", traceback.format_exc()))


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (often the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"worker process was killed by {name}{hint}"
    return f"worker process exited with code {exitcode} before it returned a result"


@dataclass
class _Worker:
    process: Any  # a SpawnProcess
    conn: Connection
    item: Any = None
    busy: bool = False


class WorkerPool(Generic[T, R]):
    """Run ``fn`` over items in up to ``workers`` spawned processes.

    Args:
        fn: a picklable module-level function ``item -> result``; items and results
            are pickled through the worker's pipe.
        workers: the most processes at once (>= 1).
        env: environment variables set in each worker before its first item.
        grace: seconds a terminated worker gets to exit before it is killed.

    Use it as a context manager; :meth:`imap_unordered` yields ``(item, result)`` in
    completion order, the result being a :class:`WorkerFailure` where ``fn`` raised or
    the worker died.
    """

    def __init__(
        self,
        fn: Callable[[T], R],
        workers: int,
        *,
        env: Mapping[str, str] | None = None,
        grace: float = 5.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.fn = fn
        self.workers = workers
        self.env = dict(env or {})
        self.grace = grace
        self._ctx = mp.get_context("spawn")  # torch's thread pools do not survive a fork
        self._live: list[_Worker] = []

    def __enter__(self) -> WorkerPool[T, R]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(terminate=exc_type is not None)

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child, self.fn, self.env), daemon=True)
        process.start()
        child.close()  # only the worker holds this end: its death closes the pipe
        worker = _Worker(process, parent)
        self._live.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        self._live.remove(worker)
        self._reap(worker)

    def _reap(self, worker: _Worker) -> None:
        # Closing our end makes a worker waiting in recv() exit; a busy one was signalled.
        worker.conn.close()
        worker.process.join(self.grace)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()

    def imap_unordered(self, items: Iterable[T]) -> Iterator[tuple[T, R | WorkerFailure]]:
        """Yield ``(item, result or WorkerFailure)`` for every item, as each finishes."""
        todo = list(items)[::-1]  # pop() from the end hands items out in order
        while todo or any(w.busy for w in self._live):
            idle = [w for w in self._live if not w.busy]
            while todo and (idle or len(self._live) < self.workers):
                worker = idle.pop() if idle else self._start()
                try:
                    worker.conn.send(todo[-1])
                except OSError:  # it died while idle: the item goes to a fresh worker
                    self._retire(worker)
                    continue
                worker.item, worker.busy = todo.pop(), True
            busy = [w for w in self._live if w.busy]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                item = worker.item
                outcome = self._collect(worker, ready)
                if outcome is not _PENDING:
                    yield item, outcome

    def _collect(self, worker: _Worker, ready: set[Any]) -> Any:
        """The worker's outcome (``fn``'s result or a failure), or ``_PENDING``; a dead
        worker is retired."""
        closed = False
        if worker.conn in ready:
            try:
                status, value = worker.conn.recv()
            except (EOFError, OSError):  # died before or while sending
                closed = True
            else:
                worker.busy = False
                return value if status == "ok" else WorkerFailure(f"worker raised:\n{value}")
        if closed or worker.process.sentinel in ready:
            # A result sent just before the exit is still in the pipe: read it next round
            # (poll() is also true at end-of-file, which that round's recv() then sees).
            if not closed and worker.conn.poll():
                return _PENDING
            self._retire(worker)
            return WorkerFailure(_death_message(worker.process.exitcode))
        return _PENDING

    def close(self, *, terminate: bool = False) -> None:
        """Stop every worker now: busy ones (all of them with ``terminate``) get SIGTERM,
        idle ones exit when their pipe closes; any still alive after ``grace`` s is killed."""
        for worker in self._live:
            if terminate or worker.busy:
                worker.process.terminate()
        for worker in self._live:
            self._reap(worker)
        self._live.clear()
