"""A process pool that always ends: one pipe per worker, nothing shared between them.

``multiprocessing.Pool`` loses a task whose worker dies: when the kernel's OOM killer
took a sweep worker mid-run, ``imap_unordered`` waited for its result for ever and the
sweep never ended. Its workers also share queues guarded by process-shared locks, so
stopping them relies on sentinels passing through those queues.

:class:`WorkerPool` gives each spawned worker its own duplex pipe and hands out one
item at a time, so the parent never waits on a lock a worker can hold. It watches
each worker's process sentinel: a worker that dies is reported as a
:class:`WorkerFailure` for the item it was running and replaced. Every failure of one
item (it raised, its worker died, it or its result could not be pickled) is a
:class:`WorkerFailure` for that item only; the map goes on. Leaving the ``with`` block
on an exception (``KeyboardInterrupt`` included, a second one too) terminates every
worker (SIGTERM, then SIGKILL after ``grace`` seconds) before the exception goes on, and
a worker whose parent dies (even by SIGKILL) exits at once instead of running on.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = [
    "WorkerFailure",
    "WorkerPool",
]

T = TypeVar("T")
R = TypeVar("R")
_PENDING = object()  # "no outcome yet"; None is a valid result of fn


@dataclass(frozen=True)
class WorkerFailure:
    """Why an item produced no result: the worker raised, or the worker process died."""

    message: str


def _exit_with_parent() -> None:
    # An orphan would train on for hours holding its run's lock; the parent's sentinel
    # becomes readable when it dies, whatever killed it.
    parent = mp.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _worker_main(conn: Connection, fn: Callable[[Any], Any], env: Mapping[str, str]) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the parent alone decides
    # what stops. SIGINT was blocked from before this process existed (see _start).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (close, an abandoned map) unwinds like an exception, so the item's cleanup
    # (`finally`, context managers: a run's lock) happens before the process ends; a
    # worker stuck beyond the grace period is killed anyway.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    os.environ.update(env)
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe: stop
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(item))
        except BaseException:  # reported to the parent, which decides; the worker goes on
            reply = ("error", traceback.format_exc())
        try:
            try:
                conn.send(reply)
            except OSError:
                raise
            except BaseException:  # the result does not pickle (any error type, recursion)
                conn.send(("error", f"the result could not be pickled:\n{traceback.format_exc()}"))
        except OSError:  # the parent is gone
            return


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-exitcode}"
        hint = " (often the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"worker process was killed by {name}{hint}"
    return f"worker process exited with code {exitcode} before it returned a result"


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT held back (not lost) while a worker starts: the child inherits the blocked
    mask, so a Ctrl-C can neither interrupt its bootstrap nor leave it untracked."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class _Worker:
    process: Any  # a SpawnProcess
    conn: Connection
    item: Any = None
    busy: bool = False
    served: int = 0  # items it returned an outcome for


class WorkerPool(Generic[T, R]):
    """Run ``fn`` over items in up to ``workers`` spawned processes.

    Args:
        fn: a picklable module-level function ``item -> result``; items and results
            are pickled through the worker's pipe.
        workers: the most processes at once (>= 1).
        env: environment variables set in each worker before its first item.
        grace: seconds terminated (or, on a normal close, idle) workers get to exit,
            together, before they are killed.

    Use it as a context manager; :meth:`imap_unordered` yields ``(item, result)`` in
    completion order, the result being a :class:`WorkerFailure` where the item failed.
    A pool is used once: after the ``with`` block it refuses new work.
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
        self._dying: list[_Worker] = []  # busy with an abandoned map's item: terminated
        self._closed = False

    def __enter__(self) -> WorkerPool[T, R]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(terminate=exc_type is not None)

    def _start(self) -> _Worker:
        if self._closed:
            raise ValueError("this WorkerPool is closed; make a new one")
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=_worker_main, args=(child, self.fn, self.env), daemon=True)
        with _sigint_blocked():
            process.start()
            worker = _Worker(process, parent)
            self._live.append(worker)  # tracked before a deferred Ctrl-C can arrive
        child.close()  # only the worker holds this end: its death closes the pipe
        return worker

    def _retire(self, worker: _Worker) -> None:
        self._live.remove(worker)
        worker.conn.close()
        worker.process.join(self.grace)  # its pipe is closed: it exits unless stuck
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()

    def imap_unordered(self, items: Iterable[T]) -> Iterator[tuple[T, R | WorkerFailure]]:
        """Yield ``(item, result or WorkerFailure)`` for every item, as each finishes.

        Abandoning the iterator (``break``) terminates the workers still running its items.
        """
        if self._closed:
            raise ValueError("this WorkerPool is closed; make a new one")
        todo = list(items)[::-1]  # pop() from the end hands items out in order
        try:
            while todo or any(w.busy for w in self._live):
                yield from self._dispatch(todo)
                busy = [w for w in self._live if w.busy]
                if not busy:
                    continue
                ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
                for worker in busy:
                    item = worker.item
                    outcome = self._collect(worker, ready)
                    if outcome is not _PENDING:
                        yield item, outcome
        finally:
            for worker in [w for w in self._live if w.busy]:  # only when abandoned or failing
                worker.process.terminate()
                self._live.remove(worker)
                self._dying.append(worker)

    def _dispatch(self, todo: list[Any]) -> Iterator[tuple[Any, WorkerFailure]]:
        """Hand items to idle workers (starting new ones up to ``workers``); yields the
        failures of items that could not be handed out."""
        while todo and (len(self._live) < self.workers or any(not w.busy for w in self._live)):
            try:
                payload = ForkingPickler.dumps(todo[-1])
            except Exception as exc:  # this item alone cannot go to a process
                yield todo.pop(), WorkerFailure(f"the item could not be pickled: {exc!r}")
                continue
            idle = [w for w in self._live if not w.busy]
            worker = idle[0] if idle else self._start()
            try:
                worker.conn.send_bytes(payload)
            except OSError:
                self._retire(worker)
                if worker.served:  # it died while idle: the item goes to a fresh worker
                    continue
                # It died before taking any item (it cannot start: an import fails in the
                # child...): retrying would start workers for ever.
                yield todo.pop(), WorkerFailure(_death_message(worker.process.exitcode))
                continue
            worker.item, worker.busy = todo.pop(), True

    def _collect(self, worker: _Worker, ready: set[Any]) -> Any:
        """The worker's outcome (``fn``'s result or a failure), or ``_PENDING``; a dead
        worker is retired."""
        closed = False
        if worker.conn in ready:
            try:
                status, value = worker.conn.recv()
            except (EOFError, OSError):  # died before or while sending
                closed = True
            except Exception as exc:  # the whole message arrived, but does not unpickle
                status, value = "error", f"the result could not be unpickled: {exc!r}"
            if not closed:
                worker.busy, worker.served = False, worker.served + 1
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
        """Stop every worker: busy ones (all, with ``terminate``) get SIGTERM, idle ones
        exit as their pipe closes; whatever is alive after ``grace`` s is killed. A second
        interrupt while waiting still kills and reaps every worker before it goes on."""
        self._closed = True
        workers, self._live, self._dying = self._live + self._dying, [], []
        try:
            for worker in workers:
                if terminate or worker.busy:
                    worker.process.terminate()
                worker.conn.close()
            deadline = time.monotonic() + self.grace
            for worker in workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
        finally:
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.kill()
            for worker in workers:
                worker.process.join()
