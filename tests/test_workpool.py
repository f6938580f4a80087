"""WorkerPool: results as a plain map gives them, failures reported per item, and a pool
that always ends (a dead worker, Ctrl-C while workers are busy or idle).

The work function is the builtin ``eval`` over expression strings, so each item says
what its worker does (return, raise, exit, be killed) with nothing to import in the
spawned processes.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spherevae.workpool import WorkerFailure, WorkerPool

EXIT = "__import__('os')._exit({})"
KILL = "__import__('os').kill(__import__('os').getpid(), {})"
SLEEP = "__import__('time').sleep({})"


def run_all(items: list[str], workers: int) -> dict[str, object]:
    with WorkerPool(eval, workers) as pool:
        out = list(pool.imap_unordered(items))
    assert sorted(i for i, _ in out) == sorted(items)  # every item exactly once
    return dict(out)


def ended_within(fn, seconds: float) -> bool:
    """Run ``fn`` in a thread; whether it returned within ``seconds`` (a hang guard).
    An exception in ``fn`` is raised here."""
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    ended = done.wait(seconds)
    if errors:
        raise errors[0]
    return ended


@settings(max_examples=6, deadline=None)
@given(values=st.lists(st.integers(-1000, 1000), min_size=0, max_size=7), workers=st.integers(1, 3))
def test_results_are_the_plain_map(values: list[int], workers: int) -> None:
    items = [f"{v} * {v} + 1" for v in values]
    expected = Counter(v * v + 1 for v in values)
    with WorkerPool(eval, workers) as pool:
        got = Counter(result for _, result in pool.imap_unordered(items))
    assert got == expected


def test_none_is_a_result_not_a_missing_one() -> None:
    assert run_all(["None", SLEEP.format(0), "1"], 2) == {"None": None, SLEEP.format(0): None, "1": 1}


def test_a_raising_item_is_a_failure_with_its_traceback_and_the_rest_go_on() -> None:
    out = run_all(["1 / 0", "2 + 2", "int('x')"], 2)
    assert out["2 + 2"] == 4
    assert isinstance(out["1 / 0"], WorkerFailure) and "ZeroDivisionError" in out["1 / 0"].message
    assert "ValueError" in out["int('x')"].message


def test_an_unpicklable_result_is_a_failure() -> None:
    out = run_all(["lambda: 0", "3"], 1)
    assert out["3"] == 3
    assert isinstance(out["lambda: 0"], WorkerFailure) and "pickle" in out["lambda: 0"].message.lower()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dead_worker_fails_its_item_and_is_replaced(workers: int) -> None:
    items = [EXIT.format(3), "5", KILL.format(9), "6", EXIT.format(0), "7"]
    out = run_all(items, workers)
    assert [out[i] for i in ("5", "6", "7")] == [5, 6, 7]
    assert out[EXIT.format(3)] == WorkerFailure(
        "worker process exited with code 3 before it returned a result")
    # Exit code 0 without a reply is a death too, not a result.
    assert isinstance(out[EXIT.format(0)], WorkerFailure)
    assert out[KILL.format(9)].message.startswith("worker process was killed by SIGKILL")
    assert mp.active_children() == []


def test_at_most_workers_processes_run_at_once() -> None:
    items = [f"__import__('os').getpid() + 0 * {i}" for i in range(8)]
    pids = set(run_all(items, 3).values())
    assert 1 <= len(pids) <= 3


def test_env_reaches_the_workers() -> None:
    item = "__import__('os').environ.get('SPHEREVAE_TEST_VAR')"
    with WorkerPool(eval, 1, env={"SPHEREVAE_TEST_VAR": "42"}) as pool:
        assert list(pool.imap_unordered([item])) == [(item, "42")]


def test_keyboard_interrupt_stops_busy_and_idle_workers() -> None:
    # One worker finishes at once and waits for work, one sleeps: Ctrl-C (here raised in
    # the consumer, where the parent receives it) must stop both and not hang.
    def scenario() -> None:
        with pytest.raises(KeyboardInterrupt):
            with WorkerPool(eval, 2, grace=2.0) as pool:
                for item, _ in pool.imap_unordered(["1", SLEEP.format(600)]):
                    assert item == "1"
                    raise KeyboardInterrupt

    assert ended_within(scenario, 120), "the pool did not stop its workers"
    assert mp.active_children() == []


def test_a_worker_that_will_not_exit_is_killed_after_grace() -> None:
    # It ignores SIGTERM and a non-daemon thread keeps it alive after its pipe closes.
    stubborn = ("[__import__('signal').signal(15, __import__('signal').SIG_IGN), "
                "__import__('threading').Thread(target=__import__('time').sleep, args=(600,)).start()]")

    def scenario() -> None:
        with pytest.raises(KeyboardInterrupt):
            with WorkerPool(eval, 1, grace=0.5) as pool:
                for _ in pool.imap_unordered([stubborn]):
                    raise KeyboardInterrupt

    assert ended_within(scenario, 120), "the stubborn worker was not killed"
    assert mp.active_children() == []


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        WorkerPool(eval, 0)
