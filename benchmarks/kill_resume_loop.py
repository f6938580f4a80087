"""kill -9 a training run at random times, again and again; check nothing is lost.

    PYTHONPATH=src python benchmarks/kill_resume_loop.py [--kills 10] [--epochs 8] [--seed 0]

1. Trains a reference run of ``--epochs`` epochs without interruption (a subprocess).
2. Starts the same run in a subprocess (``spherevae train``, then ``--resume`` once a
   checkpoint exists) and SIGKILLs it a random time (``0..--max-delay`` s) after it took the
   run's lock or, every other time, after it appended its first new epoch, so that kills
   land in data loading and config writes as well as in steps, metric appends and
   checkpoint writes (not in Python's start-up), ``--kills`` times. After each
   kill it checks the run directory as a user would find it: ``checkpoints/last.pt``
   loads (``weights_only``), ``config.yaml`` and ``metrics.jsonl`` read (a cut-off last
   line is dropped with a warning, counted), the next start takes over the stale lock
   and removes stray ``*.tmp`` files (counted).
3. Resumes to the end and compares with the reference: weights bit-identical, the
   per-epoch metrics equal (all but the wall-clock time).

Prints a JSON summary (and writes it with ``--out``); docs/design.md, "Robustness",
quotes a run of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from spherevae.io.checkpoint import load_checkpoint
from spherevae.io.files import read_jsonl
from spherevae.io.weights import load_weights
from spherevae.training.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits-tiny.yaml"


def overrides(out: Path, name: str, epochs: int) -> list[str]:
    return [f"train.out_dir={out}", f"train.run_name={name}", f"train.epochs={epochs}",
            "train.progress=false", "train.tensorboard=false", "data.max_train=512"]


def inspect_run(run: Path) -> dict[str, int]:
    """What a user finds after a kill; raises if anything is unreadable."""
    seen = {"checkpoint": 0, "cut_lines": 0, "tmp_files": len(list(run.rglob("*.tmp"))),
            "lock_left": int((run / ".lock").exists())}
    if (run / "checkpoints" / "last.pt").exists():
        load_checkpoint(run / "checkpoints" / "last.pt")  # never half a file
        seen["checkpoint"] = 1
    if (run / "config.yaml").exists():
        load_config(run / "config.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_jsonl(run / "metrics.jsonl")
    seen["cut_lines"] = sum("cut-off" in str(w.message) for w in caught)
    return seen


def start(run: Path, tmp: Path, epochs: int, name: str = "killed") -> subprocess.Popen:
    """``spherevae train`` in a subprocess: ``--resume`` once a checkpoint exists."""
    cmd = [sys.executable, "-m", "spherevae", "train"]
    if (run / "checkpoints" / "last.pt").exists():
        cmd += ["--resume", str(run), f"train.epochs={epochs}"]
    else:
        cmd += ["--config", str(CONFIG), *overrides(tmp, name, epochs)]
    # One thread everywhere: the reference and the killed run see the same reduction order.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def wait_until(proc: subprocess.Popen, run: Path, stage: str) -> None:
    """Until ``proc`` holds the run's lock (``stage="start"``) or has also appended an epoch
    to ``metrics.jsonl`` (``stage="epoch"``: it is in the training loop), or has exited."""
    before = _lines(run / "metrics.jsonl")
    while proc.poll() is None:
        try:
            locked = json.loads((run / ".lock").read_text()).get("pid") == proc.pid
        except (OSError, ValueError):
            locked = False
        if locked and (stage == "start" or _lines(run / "metrics.jsonl") > before):
            return
        time.sleep(0.02)


def compare(reference: Path, run: Path) -> dict[str, bool]:
    """Final weights and per-epoch metrics (less the wall-clock time) against the reference."""
    a, b = load_weights(reference / "model.safetensors")[0], load_weights(run / "model.safetensors")[0]
    ma, mb = read_jsonl(reference / "metrics.jsonl"), read_jsonl(run / "metrics.jsonl")
    for rows in (ma, mb):
        for r in rows:
            r.pop("epoch_time_s")
    return {"weights_bit_identical": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
            "metrics_identical": ma == mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-delay", type=float, default=3.0, help="longest wait after train starts (s)")
    p.add_argument("--out", default=None, help="also write the JSON summary here")
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kill-loop-"))
    reference = tmp / "reference"
    ref = start(reference, tmp, args.epochs, name="reference")
    ref.communicate()
    assert ref.returncode == 0, "the reference run failed"
    run = tmp / "killed"
    kills: list[dict] = []
    finished: list[dict[str, bool]] = []  # runs completed between kills, each compared
    while len(kills) < args.kills:
        proc = start(run, tmp, args.epochs)
        # Alternate: kills timed from the start (data loading, fingerprint, config writes)
        # and from the first new epoch (steps, metric appends, checkpoint writes).
        stage = "start" if len(kills) % 2 == 0 else "epoch"
        wait_until(proc, run, stage)
        delay = rng.uniform(0.0, args.max_delay)
        time.sleep(delay)
        if proc.poll() is not None:  # ended before the kill
            err = proc.stderr.read()
            if proc.returncode != 0:
                raise SystemExit(f"a start after a kill failed (exit {proc.returncode}): {err}")
            print(f"run finished before the kill at {delay:.1f} s; checked, restarting it",
                  file=sys.stderr)
            finished.append(compare(reference, run))
            shutil.rmtree(run)
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = inspect_run(run)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            epochs_logged = len(read_jsonl(run / "metrics.jsonl"))
        kills.append({"timed_from": stage, "delay_s": round(delay, 2), "epochs_logged": epochs_logged, **state})
        print(json.dumps(kills[-1]), file=sys.stderr)
        if (run / "model.safetensors").exists():  # killed after its last epoch: check it, start afresh
            done = start(run, tmp, args.epochs)  # takes over the lock, cleans, writes nothing new
            _, err = done.communicate()
            if done.returncode != 0:
                raise SystemExit(f"a start after a kill failed (exit {done.returncode}): {err}")
            finished.append(compare(reference, run))
            shutil.rmtree(run)
    final = start(run, tmp, args.epochs)
    _, final_err = final.communicate()
    found = [ln for ln in final_err.splitlines() if "warning" in ln]
    finished.append(compare(reference, run))
    summary = {
        "kills": len(kills),
        "unloadable_checkpoints": 0,  # inspect_run raised otherwise
        "kills_with_a_checkpoint": sum(k["checkpoint"] for k in kills),
        "cut_off_metric_lines_dropped": sum(k["cut_lines"] for k in kills),
        "stray_tmp_files_found": sum(k["tmp_files"] for k in kills),
        "stale_locks_left_by_kills": sum(k["lock_left"] for k in kills),
        "final_resume_exit_code": final.returncode,
        "final_resume_warnings": found,
        "completed_runs_compared": len(finished),
        "weights_bit_identical": all(f["weights_bit_identical"] for f in finished),
        "metrics_identical": all(f["metrics_identical"] for f in finished),
        "epochs": args.epochs,
        "per_kill": kills,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
