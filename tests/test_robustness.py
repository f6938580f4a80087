"""The hostile-user catalogue of issue 13, one row per case: nothing lost, nothing silent.

Every row of :data:`CASES` is ``(id, what the user does, expected outcome)``; its check
does exactly that and asserts the outcome. Ids: ``S*`` were silent (a wrong result,
garbage accepted, data lost), ``T*`` ended in a raw traceback, ``C*`` were already
handled clearly and stay so, ``N*`` are new guarantees (lock, fingerprint, atomic writes,
the CLI contract), ``U*`` treat a run directory as untrusted input and an evaluation as
valid only for the weights it measured (issue 21: no code a run names is imported, no
link followed out of it, no stale result shown as current, no stage losing another's). A CLI user error must exit 2 with exactly one line on stderr and no
traceback. The kill -9 loop lives in benchmarks/kill_resume_loop.py (docs/design.md).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spherevae.cli import COMMANDS, Command, main
from spherevae.data import load_dataset
from spherevae.data.base import DatasetNotFoundError
from spherevae.geometry.coordinates import (
    hyperspherical_cosines,
    project_to_sphere,
    to_hyperspherical,
)
from spherevae.io.checkpoint import load_checkpoint, save_checkpoint
from spherevae.io.errors import StorageError, UserError
from spherevae.io.files import atomic_write_text, read_jsonl
from spherevae.io.lock import RunDirLock
from spherevae.io.weights import load_weights
from spherevae.losses.authors import AuthorsLatentLoss
from spherevae.losses.prior import HypersphericalPriorLoss
from spherevae.losses.stats import batch_stat_kld
from spherevae.training.config import load_config
from spherevae.training.runs import train

REPO = Path(__file__).parents[1]
TINY = str(REPO / "configs" / "digits-tiny.yaml")
FAST = ["data.max_train=256", "data.max_test=128", "train.tensorboard=false", "train.progress=false"]


# --- helpers -------------------------------------------------------------------------


def user_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; assert exit 2, one line on stderr, no traceback, containing ``needles``."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    errors = [ln for ln in err.splitlines() if ": error: " in ln]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def tiny_argv(out: Path, *overrides: str) -> list[str]:
    return ["train", "--config", TINY, f"train.out_dir={out}", *FAST, *overrides]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch tiny run; cases copy it before changing anything."""
    out = tmp_path_factory.mktemp("trained")
    return train(load_config(TINY, [f"train.out_dir={out}", *FAST, "train.epochs=2"]))


def copy_run(trained: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / trained.name
    shutil.copytree(trained, dest)
    return dest


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_weights(run / "model.safetensors")[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_idx(d: Path, seed: int, n_train: int = 64, n_test: int = 32) -> None:
    """A tiny MNIST-format dataset (28x28) whose pixels depend on ``seed``."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in images.shape) + images.tobytes())
        labels = (np.arange(n) % 10).astype(np.uint8)
        (d / f"{prefix}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())


# --- S: silent before ----------------------------------------------------------------


def s1_second_process_on_a_locked_run(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    holder = subprocess.Popen(["sleep", "60"])  # a live process on this host holds the run
    try:
        lock = RunDirLock(run)
        (run / ".lock").write_text(json.dumps({**lock.holder, "pid": holder.pid}))
        before = snapshot(run)
        user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
                   f"is in use by pid {holder.pid} on host {lock.holder['host']}", "lock file")
        user_error(capsys, tiny_argv(run.parent, f"train.run_name={run.name}"), "is in use by pid")
        assert snapshot(run) == before  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()


def s1b_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunDirLock(run)
    (run / ".lock").write_text(json.dumps({**lock.holder, "pid": dead.pid}))
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    assert "stale lock" in capsys.readouterr().err
    assert not (run / ".lock").exists()  # released at the end


def s2_resume_refuses_overrides_that_change_the_training(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    before = (run / "config.yaml").read_bytes()
    user_error(capsys, ["train", "--resume", str(run), "optim.lr=0.5", "objective.beta=5"],
               "optim.lr (0.002 -> 0.5)", "objective.beta (0.01 -> 5", "train.epochs")
    assert (run / "config.yaml").read_bytes() == before


def s2b_extending_epochs_pins_the_quench_and_stays_bit_identical(tmp_path, capsys, trained):
    # The run trained 2 epochs with quench_anneal's default fraction 1/3: a quench of
    # round(2/3) = 1 epoch. Extended to 6 epochs it keeps that quench (6/3 = 2 would
    # rewrite its past) and equals a fresh 6-epoch run with quench_epochs=1, bit for bit.
    run = copy_run(trained, tmp_path)
    assert main(["train", "--resume", str(run), "train.epochs=6"]) == 0
    cfg = load_config(run / "config.yaml")
    assert cfg.train.epochs == 6 and cfg.schedule.params == {"quench_epochs": 1}
    history = read_jsonl(run / "history.jsonl")
    assert history[-1]["event"] == "resume"
    assert history[-1]["changes"] == {"train.epochs": [2, 6], "schedule.params": [{}, {"quench_epochs": 1}]}
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(6))
    assert [r["multiplier"] for r in rows[2:]] == [1.0] * 4  # after the quench: m = 1
    fresh = train(load_config(TINY, [f"train.out_dir={tmp_path / 'fresh'}", *FAST, "train.epochs=6",
                                     "schedule.params.quench_epochs=1"]))
    a, b = weights(run), weights(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def s2c_resume_cannot_go_back_in_epochs(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=1"], "already trained 2 epochs")


def s3_run_name_cannot_escape_out_dir(tmp_path, capsys, trained):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "config.yaml").write_text("users own file")
    for name in ("..", "../escaped", "a/b", ".", "a\\b"):
        user_error(capsys, tiny_argv(out, f"train.run_name={name}"), "train.run_name must be a plain")
    assert (tmp_path / "config.yaml").read_text() == "users own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "out"]
    assert list(out.iterdir()) == []
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nbase: {TINY}\nout_dir: {tmp_path / 'sw'}\ngrid:\n  data.root: [/etc]\n")
    user_error(capsys, ["sweep", "--config", str(sweep)], "plain directory name", "root=/etc")


def s4_report_out_does_not_overwrite_a_run_config(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    atomic_write_text(run / "eval" / "metrics.json", json.dumps({"rmse_percent": 1.0}))
    before = (run / "config.yaml").read_bytes()
    user_error(capsys, ["report", str(run), "--out", str(run / "config.yaml")],
               "is not an HTML report; refusing to overwrite")
    assert (run / "config.yaml").read_bytes() == before
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 0  # a report may be rewritten
    assert main(["report", str(run), "--out", str(out)]) == 0


def s5_explicit_data_root_without_the_data_is_an_error(tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    write_idx(elsewhere, seed=0)
    monkeypatch.setenv("SPHEREVAE_FASHION_MNIST_DIR", str(elsewhere))  # a copy exists elsewhere
    assert len(load_dataset("fashion-mnist", "test", download=False)) == 32
    with pytest.raises(DatasetNotFoundError, match=r"nonexistent.*only place looked"):
        load_dataset("fashion-mnist", "test", root=tmp_path / "nonexistent", download=False)
    user_error(capsys, tiny_argv(tmp_path / "o", "data.name=fashion-mnist",
                                 f"data.root={tmp_path / 'nonexistent'}", "data.download=false"),
               "nonexistent", "only place looked")
    with pytest.raises(ValueError, match="built in and reads no files"):
        load_dataset("digits", root=tmp_path)


def s6_empty_override_value_is_an_error(tmp_path, capsys):
    user_error(capsys, tiny_argv(tmp_path, "model.latent_dim="), "'model.latent_dim=' has no value",
               "model.latent_dim=null")
    assert not (tmp_path / "digits-tiny").exists()


@given(st.floats(-44, 38), st.lists(st.floats(0.05, 1.0), min_size=2, max_size=6),
       st.lists(st.booleans(), min_size=6, max_size=6))
def scale_invariance(log_scale, magnitudes, signs):
    x32 = torch.tensor([m * (-1 if s else 1) for m, s in zip(magnitudes, signs, strict=False)],
                       dtype=torch.float64).mul(10.0 ** log_scale).float()[None]
    if not bool((x32 != 0).any()):
        return  # underflowed to the zero vector: covered by the convention tests
    ref = x32.double() / x32.double().abs().max()  # float64 reference on the rescaled input
    tails = ref.square().flip(-1).cumsum(-1).flip(-1).sqrt()
    cos_ref = torch.where(tails[..., :-1] > 0, ref[..., :-1] / tails[..., :-1], torch.ones(()))
    r_ref = tails[0, 0] * x32.double().abs().max()
    for fast in (True, False):
        r, cos = hyperspherical_cosines(x32, fast=fast)
        assert torch.allclose(cos.double(), cos_ref, atol=2e-6), (fast, cos, cos_ref)
        if r_ref < torch.finfo(torch.float32).max:
            assert abs(float(r) - float(r_ref)) <= 2e-6 * float(r_ref) + 2 * 2.0 ** -149
    phi = to_hyperspherical(x32)[1].double()
    assert torch.allclose(phi[0, :-1].cos(), cos_ref[0, :-1], atol=1e-5)


def s7_subnormal_and_huge_inputs_keep_scale_invariant_quantities(tmp_path, capsys):
    x = torch.full((1, 4), 1e-40)  # float32 subnormal
    r, cos = hyperspherical_cosines(x)
    assert torch.allclose(cos, torch.tensor([[0.5, 1 / 3 ** 0.5, 1 / 2 ** 0.5]]))
    assert float(r) == pytest.approx(2e-40, rel=1e-3)
    scale_invariance()  # hypothesis over scales 1e-44 .. 1e38
    mu = torch.full((16, 8), 1e-40) * torch.rand(16, 8, generator=torch.Generator().manual_seed(0)).add(0.5)
    mu.requires_grad_()
    loss = HypersphericalPriorLoss(8)(mu, torch.ones(16, 8))  # validation on
    assert torch.isfinite(loss)
    r, _ = hyperspherical_cosines(torch.full((2, 4), 1e-40, requires_grad=True))
    r.sum().backward()  # the radius gradient is scale-free: finite at any scale


def s8_nan_radius_and_nonpositive_sigma_are_errors(tmp_path, capsys):
    for radius in (float("nan"), float("inf"), 0.0, -2.0, torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="radius must be finite and > 0"):
            project_to_sphere(torch.ones(2, 4), radius)
    mu = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    for bad in (-1.0, 0.0, float("nan")):
        sigma = torch.ones(8, 4)
        sigma[3, 2] = bad
        for loss in (HypersphericalPriorLoss(4), AuthorsLatentLoss(4, sigma_angle_weight=1.0)):
            with pytest.raises(ValueError, match="sigma must be"):
                loss(mu, sigma)
        with pytest.raises(ValueError, match="sigma must be"):
            batch_stat_kld(mu, sigma)


def _start_sweep(tmp_path: Path, epochs: list[int], finished: int = 1) -> tuple[subprocess.Popen, Path]:
    """A 2-worker sweep over ``train.epochs``; the run with ``finished`` epochs is already
    done (skipped at once). Returns once the first two other runs are training."""
    out = tmp_path / "sw"
    done = out / "runs" / f"epochs={finished}" / "eval"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"rmse_percent": 9.0, "complete": True}))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nbase: {TINY}\nout_dir: {out}\nworkers: 2\n"
                     f"overrides: [train.progress=false, data.max_train=256]\n"
                     f"grid:\n  train.epochs: {[finished, *epochs]}\n")
    # The default SIGINT disposition, as in a terminal: a pytest-xdist worker may ignore
    # SIGINT, and a child would inherit that (Python then installs no KeyboardInterrupt).
    # Set by a tiny parent that execs the CLI (a disposition survives exec), not by
    # preexec_fn, which may deadlock when the test process has threads (xdist does).
    argv = [sys.executable, "-m", "spherevae", "sweep", "--config", str(sweep)]
    boot = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", boot, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # Until the long runs have finished an epoch (a bounded poll, not a timing assertion; the
    # pipes are read only at the end, so nothing here can block for ever): by then the
    # worker of the skipped run has long been back waiting for work.
    # Its first checkpoint is the mark (written after the epoch's metrics line).
    # Up to 10 min: under load (the 2 cores shared with other jobs) the first epoch of the
    # two runs has taken longer than 2 min, and a Ctrl-C before it tests something else.
    started = [out / "runs" / f"epochs={e}" / "checkpoints" / "last.pt" for e in epochs[:2]]
    for _ in range(6000):
        if all(p.exists() for p in started) or proc.poll() is not None:
            break
        time.sleep(0.1)
    return proc, out


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    # A guard against a hang, not a timing assertion: on an idle machine the sweep exits in
    # ~1-2 s after the signal; a saturated 2-core machine once needed more than 60 s.
    try:
        return proc.communicate(timeout=240)
    finally:
        proc.kill()


def s9_ctrl_c_on_a_multi_worker_sweep(tmp_path, capsys):
    # One run already finished, three long ones (one waits): Ctrl-C while two train.
    proc, out = _start_sweep(tmp_path, [5000, 5001, 5002])
    proc.send_signal(signal.SIGINT)
    text, err = _finish(proc)
    assert proc.returncode == 130, (text, err)
    assert "interrupted; stopped 2 running run(s); 1 of 4 finished" in text
    # Nothing but the one line: no traceback, no "leaked semaphore" warning from a worker.
    assert err.strip() == "spherevae sweep: interrupted", err
    rows = json.loads((out / "results.json").read_text())
    assert [(r["name"], r["status"]) for r in rows] == [("epochs=1", "skipped")]
    assert (out / "results.csv").read_text().splitlines()[1].startswith("epochs=1,skipped")
    for e in (5000, 5001, 5002):
        assert not (out / "runs" / f"epochs={e}" / "eval" / "metrics.json").exists()
    # SIGTERM unwinds the stopped runs: their locks are released, not left stale (the
    # next sweep then warned about taking over a dead process's lock).
    for e in (5000, 5001):
        assert (out / "runs" / f"epochs={e}" / "checkpoints" / "last.pt").is_file()
        assert not (out / "runs" / f"epochs={e}" / ".lock").exists()


def s9b_ctrl_c_with_an_idle_worker(tmp_path, capsys):
    # Fewer runs left than workers, as at the end of every sweep: one worker waits for work
    # when Ctrl-C comes, the other is training; both stop, nothing else is printed.
    proc, out = _start_sweep(tmp_path, [5000])
    proc.send_signal(signal.SIGINT)
    text, err = _finish(proc)
    assert proc.returncode == 130, (text, err)
    assert "interrupted; stopped 1 running run(s); 1 of 2 finished" in text
    assert err.strip() == "spherevae sweep: interrupted", err
    rows = json.loads((out / "results.json").read_text())
    assert [(r["name"], r["status"]) for r in rows] == [("epochs=1", "skipped")]


def s9c_a_worker_killed_mid_run(tmp_path, capsys):
    # The out-of-memory killer takes a worker: its run is failed with the reason (results
    # and error.txt), and the sweep ends instead of waiting for ever.
    proc, out = _start_sweep(tmp_path, [5000])
    run = out / "runs" / "epochs=5000"
    os.kill(json.loads((run / ".lock").read_text())["pid"], signal.SIGKILL)
    text, err = _finish(proc)
    assert proc.returncode == 1, (text, err)
    assert "epochs=5000: failed: worker process was killed by SIGKILL" in text
    assert "Traceback" not in err, err
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["epochs=5000"]["status"] == "failed" and "SIGKILL" in rows["epochs=5000"]["error"]
    assert "SIGKILL" in (run / "error.txt").read_text()


def s10_stray_tmp_files_are_removed_on_the_next_start(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    stray = [run / "checkpoints" / ".last.pt.k1ll3d.tmp", run / ".config.yaml.x1.tmp",
             run / "eval" / "metrics.json.tmp"]
    for p in stray:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half a file")
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    assert "removed 3 stray temporary file(s)" in capsys.readouterr().err
    assert not any(p.exists() for p in stray)
    assert not list(run.rglob("*.tmp"))


# --- T: raw tracebacks before --------------------------------------------------------


def t1_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\nmodel: [\n")
    user_error(capsys, ["train", "--config", str(bad)], str(bad), "not valid YAML at line")
    user_error(capsys, ["sweep", "--config", str(bad)], "sweep config", "not valid YAML")


def t2_non_image_file_in_an_image_folder(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.png").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipping 1 file\(s\) that are not readable images.*notes.png"):
        train_ds = load_dataset("folder", "train", root=folder, image_size=8)
    with warnings.catch_warnings(record=True):
        test_ds = load_dataset("folder", "test", root=folder, image_size=8)
    assert len(train_ds) + len(test_ds) == 40


def _break_checkpoint(how: str) -> Callable[[Path], None]:
    def apply(ckpt: Path) -> None:
        raw = ckpt.read_bytes()
        if how == "truncated":
            ckpt.write_bytes(raw[: len(raw) // 2])
        elif how == "empty":
            ckpt.write_bytes(b"")
        elif how == "garbage":
            ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    return apply


def t3_truncated_empty_or_garbage_checkpoint(tmp_path, capsys, trained):
    for how, says in (("truncated", "truncated or damaged"), ("empty", "it is empty"),
                      ("garbage", "not a torch checkpoint")):
        run = copy_run(trained, tmp_path / how)
        _break_checkpoint(how)(run / "checkpoints" / "last.pt")
        user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
                   str(run / "checkpoints" / "last.pt"), says)


def t4_resume_with_a_different_architecture(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    user_error(capsys, ["train", "--resume", str(run), "model.latent_dim=6"],
               "model.latent_dim (8 -> 6)")
    # Edited by hand in config.yaml: the checkpoint's provenance names the edit ...
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("latent_dim: 8", "latent_dim: 6"))
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
               "config.yaml was edited after training", "model.latent_dim 8 -> 6")
    # ... and a checkpoint from before provenance no longer fits the model.
    ckpt = run / "checkpoints" / "last.pt"
    save_checkpoint({k: v for k, v in load_checkpoint(ckpt).items() if k != "provenance"}, ckpt)
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
               "different architecture", "last.pt")


def t5_checkpoint_with_a_pickled_object(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    torch.save({**state, "extra": Payload()}, run / "checkpoints" / "last.pt")
    line = user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
                      "pickled Python objects", "never loads")
    assert "weights_only=False" not in line
    assert not marker.exists()


def t6_checkpoint_missing_an_entry(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    del state["optimizers"]
    save_checkpoint(state, run / "checkpoints" / "last.pt")
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "lacks the entries ['optimizers']")
    from spherevae.training.runs import load_run

    # final weights of another format, then an old-style model.pt without its config
    state, _ = load_weights(run / "model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(run / "model.safetensors"))
    with pytest.raises(UserError, match="not spherevae weights"):
        load_run(run)
    (run / "model.safetensors").unlink()
    save_checkpoint({"model": state}, run / "model.pt")
    with pytest.raises(UserError, match="lacks both model_spec and model_config"):
        load_run(run)


def t7_disk_full_during_a_checkpoint_write(tmp_path, capsys):
    path = save_checkpoint({"epoch": 1, "w": torch.zeros(10)}, tmp_path / "last.pt")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # writes past 64 KiB fail
    try:
        with pytest.raises(StorageError, match=r"cannot write .*last.pt: File too large; nothing was replaced"):
            save_checkpoint({"epoch": 2, "w": torch.zeros(100_000)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert load_checkpoint(path)["epoch"] == 1  # the previous version is intact
    assert os.listdir(tmp_path) == ["last.pt"]  # and no temporary file is left


def t8_cut_off_last_line_in_metrics_jsonl(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_lo')  # what a kill during an append leaves
    with pytest.warns(UserWarning, match="metrics.jsonl: dropped a cut-off last line"):
        assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [0, 1]
    assert main(["train", "--resume", str(run), "train.epochs=3"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "metrics.jsonl: dropped a cut-off last line" in err
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    # A damaged line that is not the last one is not a crash artefact: an error naming it.
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "metrics.jsonl, line 2")


def t9_report_out_is_a_directory(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    atomic_write_text(run / "eval" / "metrics.json", "{}")
    user_error(capsys, ["report", str(run), "--out", str(tmp_path)], "is a directory")


def t10_corrupt_eval_metrics_json(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text('{"fid": 3.')
    user_error(capsys, ["report", str(run)], str(run / "eval" / "metrics.json"), "not valid JSON",
               "spherevae evaluate")


def t10b_corrupt_eval_metrics_json_in_a_sweep_is_evaluated_again(tmp_path, capsys, trained):
    from spherevae.experiments.spec import RunSpec
    from spherevae.experiments.sweep import execute_run

    run = copy_run(trained, tmp_path)
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text('{"fid": 3.')
    spec = RunSpec(run.name, run, Path(TINY), (*FAST, "train.epochs=2"), {},
                   # domain-v2 on the 8x8 digits is just below the quality floor (0.847 < 0.85)
                   {"num_samples": 50, "figures": False, "progress": False, "allow_weak_features": True})
    with pytest.warns(UserWarning, match=r"metrics.json is not valid JSON.*evaluating digits-tiny again"):
        result = execute_run(spec)
    assert result.status == "done", result.error
    assert json.loads((run / "eval" / "metrics.json").read_text())["num_test"] > 0  # rewritten, valid


def t10c_an_evaluation_cut_off_before_its_last_stage_is_not_done(tmp_path, capsys, trained):
    """evaluate writes metrics.json after every stage group; a sweep must not take the one
    left by an evaluation killed half-way (complete: false) for a finished run."""
    from spherevae.experiments.spec import RunSpec
    from spherevae.experiments.sweep import execute_run
    from spherevae.training.runs import weights_identity

    run = copy_run(trained, tmp_path)
    (run / "eval").mkdir()
    identity = weights_identity(run)
    partial = {"weights": {"sha256": identity["sha256"], "epoch": identity["epoch"]}, "complete": False,
               "mse_sum": 1.0}
    (run / "eval" / "metrics.json").write_text(json.dumps(partial))
    spec = RunSpec(run.name, run, Path(TINY), (*FAST, "train.epochs=2"), {},
                   {"num_samples": 50, "figures": False, "progress": False, "allow_weak_features": True})
    with pytest.warns(UserWarning, match=r"does not record a finished evaluation \(stopped before its last stage.*evaluating digits-tiny again"):
        result = execute_run(spec)
    assert result.status == "done", result.error
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["complete"] is True and "main_sampler" in metrics
    assert execute_run(spec).status == "skipped"  # now it is done


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def t11_evaluate_on_cuda_without_cuda(tmp_path, capsys, trained):
    user_error(capsys, ["evaluate", str(trained), "--device", "cuda"], "CUDA is not available")
    user_error(capsys, ["evaluate", str(trained), "--device", "tpu"], "is not a device")


def t12_out_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    user_error(capsys, tiny_argv(tmp_path / "afile"), "train.out_dir", "is a file")


def t13_demo_with_a_negative_latent_dim(tmp_path, capsys):
    user_error(capsys, ["demo", "--latent-dim", "-5"], "--latent-dim must be an integer >= 2, got -5")
    user_error(capsys, ["demo", "--batch", "1"], "--batch must be")


# --- C: handled clearly before, kept -------------------------------------------------


def c1_unknown_config_key(tmp_path, capsys):
    user_error(capsys, tiny_argv(tmp_path, "train.epoch=3"), "unknown config key 'train.epoch'")


def c2_missing_config_file(tmp_path, capsys):
    user_error(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], "does not exist")


def c3_resume_without_a_checkpoint(tmp_path, capsys):
    user_error(capsys, ["train", "--resume", str(tmp_path)], "is not a run directory (no config.yaml in it)")


def c4_train_into_a_finished_run(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    user_error(capsys, tiny_argv(run.parent), "already holds a run; pass --resume")


def c5_unknown_dataset(tmp_path, capsys):
    user_error(capsys, tiny_argv(tmp_path, "data.name=imagenet"), "data.name must be one of")


# --- N: new guarantees ---------------------------------------------------------------


def n1_fingerprint_catches_other_data_of_the_same_name_and_shape(tmp_path, capsys):
    from spherevae.evaluation.pipeline import evaluate_run

    data = tmp_path / "mnist"
    write_idx(data, seed=0)
    run = train(load_config(TINY, [f"train.out_dir={tmp_path}", "data.name=mnist", f"data.root={data}",
                                   "train.epochs=1", "train.progress=false", "train.tensorboard=false"]))
    fp = json.loads((run / "data_fingerprint.json").read_text())
    assert fp["dataset"] == "mnist" and fp["train"]["size"] == 64 and fp["test"]["size"] == 32
    write_idx(data, seed=1)  # same name, shape and sizes; other images (MNIST -> Fashion-MNIST)
    with pytest.raises(UserError, match=r"not the data this run was trained on.*train.sample_sha256 differs"):
        evaluate_run(run, progress=False, figures=False, num_samples=10)
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=2"], "not the data this run was trained on")
    write_idx(data, seed=0)
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0  # the original data again


def n2_cli_debug_flag_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(UserError, match="--latent-dim must be"):
        main(["--debug", "demo", "--latent-dim", "-5"])
    with pytest.raises(UserError):
        main(["demo", "--latent-dim", "-5", "--debug"])


def n3_internal_errors_keep_their_traceback(tmp_path, capsys, monkeypatch):
    def broken(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setitem(COMMANDS, "broken", Command("a command with a bug", lambda p: None, broken))
    with pytest.raises(KeyError, match="a bug"):
        main(["broken"])


def n4_lock_is_released_after_success_and_failure(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0
    assert not (run / ".lock").exists()
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=1"], "already trained")
    assert not (run / ".lock").exists()
    with RunDirLock(run):  # held by this live process: refused at once
        with pytest.raises(UserError, match=f"in use by pid {os.getpid()}"):
            RunDirLock(run).acquire()


def n5_every_file_of_a_run_is_written_atomically(tmp_path, capsys, trained):
    # No temporary file survives a run, and config.yaml / JSON files parse.
    assert not list(trained.rglob("*.tmp"))
    load_config(trained / "config.yaml")
    json.loads((trained / "data_fingerprint.json").read_text())
    assert len(read_jsonl(trained / "metrics.jsonl")) == 2
    assert read_jsonl(trained / "history.jsonl")[0]["event"] == "start"


def n6_jsonl_reader_edge_cases(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    assert read_jsonl(path) == []  # absent: nothing yet
    path.write_text("")
    assert read_jsonl(path) == []
    path.write_text('{"a": 1}\n\n{"a": 2}\n\n')  # blank lines are not records
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n[1, 2]\n{"a": 3}\n')  # a non-object line in the middle
    with pytest.raises(UserError, match=r"line 2: not a JSON record"):
        read_jsonl(path)


def n7_schedules_sized_by_the_total_are_pinned_or_warned(tmp_path, capsys):
    from spherevae.training.resume import pin_schedule

    assert pin_schedule("quench_anneal", {}, 300) == {"quench_epochs": 100}
    assert pin_schedule("quench_anneal", {"quench_fraction": 0.5}, 9) == {"quench_fraction": 0.5, "quench_epochs": 4}
    assert pin_schedule("quench_anneal", {"quench_epochs": 7}, 300) == {"quench_epochs": 7}
    assert pin_schedule("linear_warmup", {}, 20) == {"warmup_epochs": 2.0}
    assert pin_schedule("constant", {}, 20) == {}
    with pytest.warns(UserWarning, match="stretches the cycles"):
        assert pin_schedule("cyclical", {"cycles": 2}, 20) == {"cycles": 2}


# --- U: a run directory is untrusted input; an evaluation is never stale (issue 21) ----


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> Path:
    """A copy of ``trained``, evaluated once (small: 64 images, 64 samples, vmf only)."""
    from spherevae.evaluation.pipeline import evaluate_run

    run = tmp_path_factory.mktemp("evaluated") / trained.name
    shutil.copytree(trained, run)
    evaluate_run(run, **EVAL_FAST)
    return run


EVAL_FAST = {"num_samples": 64, "max_test": 64, "samplers": ("vmf",), "tsne_points": 64, "progress": False}
EVAL_ARGV = ["--num-samples", "64", "--max-test", "64", "--samplers", "vmf", "--tsne-points", "64"]


def _as_user_model_run(run: Path, cls: str) -> None:
    """Rewrite ``run``'s weights as if trained on a user model whose class is ``cls``."""
    from spherevae.io.weights import read_provenance, save_weights

    state, _spec = load_weights(run / "model.safetensors")
    fake = {"kind": "adapter", "latent_dim": 8, "project_to_sphere": True,
            "source": {"class": cls, "kwargs": {}}}
    save_weights(run / "model.safetensors", state, fake, read_provenance(run / "model.safetensors"))


def u1_code_named_by_a_run_is_never_run(tmp_path, capsys, trained, monkeypatch):
    import spherevae

    marker = tmp_path / "code-ran"
    (tmp_path / "evilmod.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable: only the refusal keeps it from running
    monkeypatch.chdir(tmp_path)
    run = copy_run(trained, tmp_path)
    for cls in ("evilmod:X", "this:X"):
        _as_user_model_run(run, cls)
        with pytest.raises(UserError, match=rf"allow_classes=\['{cls}'\]"):
            spherevae.load(run)
        user_error(capsys, ["evaluate", str(run)], "the CLI never imports code a run names",
                   f"allow_classes=['{cls}']")
        assert "Beautiful is better" not in capsys.readouterr().out
    assert not marker.exists() and "evilmod" not in sys.modules and "this" not in sys.modules


def u2_an_evaluation_of_other_weights_is_shown_as_stale(tmp_path, capsys, evaluated):
    import spherevae

    run = copy_run(evaluated, tmp_path)
    fresh = spherevae.load(run)
    assert "stale" not in fresh.metrics and fresh.metrics["weights"] == fresh.weights
    old_sampler = (run / "samplers" / "vmf.safetensors").read_bytes()
    assert main(["train", "--resume", str(run), "train.epochs=3"]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "STALE evaluation" in err and "epoch 2, the run's weights are now of epoch 3" in err
    page = (tmp_path / "r.html").read_text()
    assert f"{run.name} [STALE]" in page and "STALE evaluation" in page
    assert page.count("data:image/png") == 2  # the report's own plane and curves, no stale figure
    resumed = spherevae.load(run)
    with pytest.warns(UserWarning, match="is stale: made from the weights of epoch 2"):
        assert "epoch 3" in resumed.metrics["stale"]
    # A sampler fitted for the old weights put back by hand: refitted, never reused.
    (run / "samplers" / "vmf.safetensors").write_bytes(old_sampler)
    with pytest.warns(UserWarning, match="was fitted for other weights"):
        resumed.sample(4, "vmf")
    from spherevae.distributions.samplers import sampler_made_from

    assert sampler_made_from(run / "samplers" / "vmf.safetensors") == resumed.weights


def u3_evaluate_and_training_never_interleave(tmp_path, capsys, trained):
    from spherevae.io.lock import RunReadLock

    run = copy_run(trained, tmp_path)
    with RunReadLock(run), RunReadLock(run):  # evaluations share the run
        user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "is being evaluated")
    with RunDirLock(run):  # a training holds it
        user_error(capsys, ["evaluate", str(run), *EVAL_ARGV], "is being trained by pid", "lock file")
    assert not (run / "eval").exists() and not (run / "samplers").exists()


def u4_edited_run_files_are_refused(tmp_path, capsys, trained):
    run = copy_run(trained, tmp_path)
    config = (run / "config.yaml").read_text()
    # objective: deleted -> the default 'standard' objective would train on
    lines, out, skip = config.splitlines(), [], False
    for line in lines:
        skip = line.startswith("objective:") or (skip and line.startswith(" "))
        if not skip:
            out.append(line)
    (run / "config.yaml").write_text("\n".join(out) + "\n")
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"],
               "config.yaml was edited after training", "objective.name 'compressed' -> 'standard'")
    # model.latent_dim edited: evaluate refuses before any work
    (run / "config.yaml").write_text(config.replace("latent_dim: 8", "latent_dim: 6"))
    user_error(capsys, ["evaluate", str(run), *EVAL_ARGV], "model.latent_dim 8 -> 6")
    (run / "config.yaml").write_text(config)
    # data_fingerprint.json edited (a list), then edited (other values)
    fp = run / "data_fingerprint.json"
    original = fp.read_text()
    fp.write_text("[1, 2]")
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "data_fingerprint.json holds a JSON list")
    fp.write_text(original.replace('"digits"', '"other"'))
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "data_fingerprint.json was edited")


def u4b_a_deleted_fingerprint_is_no_way_to_other_data(tmp_path, capsys):
    data = tmp_path / "mnist"
    write_idx(data, seed=0)
    run = train(load_config(TINY, [f"train.out_dir={tmp_path}", "data.name=mnist", f"data.root={data}",
                                   "train.epochs=1", "train.progress=false", "train.tensorboard=false"]))
    (run / "data_fingerprint.json").unlink()
    write_idx(data, seed=1)  # other images, same name, shape and sizes
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=2"], "not the data this run was trained on")
    assert not (run / "data_fingerprint.json").exists()  # nothing written for the other data
    write_idx(data, seed=0)
    with pytest.warns(UserWarning, match="data_fingerprint.json is missing; checking the data against"):
        train(load_config(run / "config.yaml", ["train.epochs=2"]), resume=True)
    assert json.loads((run / "data_fingerprint.json").read_text())["dataset"] == "mnist"


def _alarm(seconds: int) -> None:
    def fail(*_):
        raise TimeoutError("hung")

    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


def u5_links_fifos_and_odd_files_in_a_run_are_refused(tmp_path, capsys, evaluated):
    import base64

    import spherevae

    run = copy_run(evaluated, tmp_path)
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n-----BEGIN PRIVATE KEY----- not for the page")
    (run / "eval" / "key.png").symlink_to(secret)
    (run / "eval" / "text.png").write_text("not a png")
    os.mkfifo(run / "eval" / "fifo.png")
    capsys.readouterr()
    _alarm(60)  # a FIFO read would block forever
    try:
        assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    finally:
        signal.alarm(0)
    err, page = capsys.readouterr().err, (tmp_path / "r.html").read_text()
    assert base64.b64encode(secret.read_bytes())[:40].decode() not in page
    assert "outside the run directory" in err and "not a regular file" in err and "not a PNG file" in err
    assert page.count("data:image/png") == 2 + len(list((evaluated / "eval").glob("*.png")))
    # eval/ linked outside: evaluate refuses before writing anything
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metrics.json").write_text("{}")
    shutil.rmtree(run / "eval")
    (run / "eval").symlink_to(outside)
    user_error(capsys, ["evaluate", str(run), *EVAL_ARGV], "outside the run directory", "writes nothing outside")
    assert (outside / "metrics.json").read_text() == "{}"
    # config.yaml linked outside, a YAML alias bomb, an oversized or non-object metrics.json
    (run / "eval").unlink()
    (run / "eval").mkdir()
    config = (run / "config.yaml").read_text()
    (tmp_path / "elsewhere.yaml").write_text(config)
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(UserError, match="outside the run directory"):
        spherevae.load(run)
    (run / "config.yaml").unlink()
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    (run / "config.yaml").write_text(bomb + config)
    user_error(capsys, ["evaluate", str(run)], "line 1", "anchors and aliases", "not accepted")
    (run / "config.yaml").write_text(config)
    (run / "eval" / "metrics.json").write_text("[]")
    user_error(capsys, ["report", str(run), "--out", str(tmp_path / "r2.html")], "metrics.json holds a JSON list")
    with open(run / "eval" / "metrics.json", "wb") as f:
        f.truncate(65 * 2**20)  # sparse: 65 MiB of zeros
    user_error(capsys, ["report", str(run), "--out", str(tmp_path / "r2.html")], "metrics.json is larger than")


def u6_image_modes_and_data_scales(tmp_path, capsys):
    from PIL import Image

    import spherevae

    folder = tmp_path / "wide"
    folder.mkdir()
    values = np.arange(0, 65536, 4369, dtype=np.uint16)  # 16 levels over the full 16-bit range
    for i, v in enumerate(values):
        Image.fromarray(np.full((8, 8), v, dtype=np.uint16)).save(folder / f"{i}.png")
    assert Image.open(folder / "0.png").mode == "I;16"
    both = [load_dataset("folder", s, root=folder, test_fraction=0.3) for s in ("train", "test")]
    got = sorted(int(ds.images[i, 0, 0, 0]) for ds in both for i in range(len(ds.images)))
    assert got == sorted(round(int(v) * 255 / 65535) for v in values)  # its real range
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(folder / "float.tiff")
    from spherevae.data.base import CorruptDatasetError

    with pytest.raises(CorruptDatasetError, match=r"float.tiff has pixel mode 'F' \(32-bit float pixels\)"):
        load_dataset("folder", "train", root=folder)
    from _user_models import MLPVAE

    x = (torch.rand(40, 64) * 255).to(torch.uint8)
    with pytest.raises(ValueError, match=r"train is torch.uint8 and test is torch.float32.*test 25\d"):
        spherevae.fit(MLPVAE(), train=x[:32], test=x[32:].float(), out_dir=tmp_path / "f", epochs=1)
    assert not (tmp_path / "f").exists()


def u7_a_failing_figure_or_a_full_disk_costs_only_figures(tmp_path, capsys, evaluated):
    run = copy_run(evaluated, tmp_path)
    shutil.rmtree(run / "eval")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40 * 1024, hard))  # the larger figures cannot be written
    try:
        capsys.readouterr()
        code = main(["evaluate", str(run), *EVAL_ARGV])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    lost = [ln for ln in err.splitlines() if "not drawn" in ln]
    assert lost and all("File too large" in ln for ln in lost), err
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["rmse_percent"] > 0 and len(metrics["warnings"]) >= len(lost)
    assert not list((run / "eval").glob("*.tmp")) and not list((run / "eval").glob(".*.tmp"))
    # eval/ that is a file: one line, before any work
    shutil.rmtree(run / "eval")
    (run / "eval").write_text("x")
    user_error(capsys, ["evaluate", str(run), *EVAL_ARGV], "eval is not a directory")


def u8_user_errors_that_were_tracebacks(tmp_path, capsys, evaluated):
    from torch.utils.data import DataLoader

    import spherevae
    from _user_models import MLPVAE

    run = copy_run(evaluated, tmp_path)
    loaded = spherevae.load(run)
    sampler = run / "samplers" / "vmf.safetensors"
    sampler.write_bytes(sampler.read_bytes()[:40])  # truncated
    with pytest.raises(UserError, match=r"sampler file .*vmf.safetensors is damaged.*delete it"):
        loaded.sample(2, "vmf")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(sampler))  # no metadata
    with pytest.raises(UserError, match="has no 'sampler' metadata"):
        loaded.sample(2, "vmf")
    with pytest.raises(ValueError, match=r"1000000000 decoded samples need about .* GiB.*use at most"):
        loaded.sample(10**9, "vmf")
    (run / ".lock").write_text(json.dumps({"pid": "abc", "host": "h", "time": "t"}))
    user_error(capsys, ["train", "--resume", str(run), "train.epochs=3"], "unreadable lock file")
    (run / ".lock").unlink()
    user_error(capsys, ["train", "--config", str(tmp_path)], "is a directory, not a YAML file")
    user_error(capsys, tiny_argv(tmp_path / ("n" * 300)), "File name too long", "n" * 50)
    x = torch.rand(40, 64)
    dicts = DataLoader([{"image": r} for r in x], batch_size=8)
    with pytest.raises(TypeError, match=r"train \(a DataLoader\) yields dicts \(keys \['image'\]\)"):
        spherevae.fit(MLPVAE(), train=dicts, test=x, out_dir=tmp_path / "a", epochs=1)

    class OneTensor(MLPVAE):
        def encode(self, x):
            return super().encode(x)[0]

    class WrongShape(MLPVAE):
        def decode(self, z):
            return super().decode(z)[:, :10]

    with pytest.raises(TypeError, match=r"OneTensor.encode must return \(mu, logvar\).*got Tensor of shape \(2, 8\)"):
        spherevae.fit(OneTensor(), train=x, test=x, out_dir=tmp_path / "b", epochs=1)
    with pytest.raises(ValueError, match=r"WrongShape.decode must return images of the input's shape \(2, 64\), got Tensor of shape \(2, 10\)"):
        spherevae.fit(WrongShape(), train=x, test=x, out_dir=tmp_path / "c", epochs=1)
    with torch.device("meta"):
        meta = MLPVAE()
    with pytest.raises(ValueError, match="has tensors on the meta device"):
        spherevae.fit(meta, train=x, test=x, out_dir=tmp_path / "d", epochs=1)
    assert not any((tmp_path / d).exists() for d in "abcd")


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    expected: str
    check: Callable[..., None]
    slow: bool = False  # > 20 s on 2 CPU cores (still run in CI)


CASES = [
    Case("S1", "two trains in one run directory", "second fails at once naming the holder", s1_second_process_on_a_locked_run),
    Case("S1b", "lock left by a killed run", "stale lock taken over with a warning", s1b_stale_lock_of_a_dead_process_is_taken_over),
    Case("S2", "--resume RUN optim.lr=0.5 objective.beta=5", "error naming both; config.yaml unchanged", s2_resume_refuses_overrides_that_change_the_training),
    Case("S2b", "--resume RUN train.epochs=6 with quench_anneal", "applied, recorded, quench pinned, bit-identical", s2b_extending_epochs_pins_the_quench_and_stays_bit_identical),
    Case("S2c", "--resume RUN train.epochs below the epochs done", "error", s2c_resume_cannot_go_back_in_epochs),
    Case("S3", "train.run_name=.. (or with a separator)", "error; nothing written outside out_dir", s3_run_name_cannot_escape_out_dir),
    Case("S4", "report --out RUN/config.yaml", "refused; config unchanged", s4_report_out_does_not_overwrite_a_run_config),
    Case("S5", "data.root=/nonexistent data.download=false", "error naming the root", s5_explicit_data_root_without_the_data_is_an_error),
    Case("S6", "model.latent_dim= (empty value)", "error", s6_empty_override_value_is_an_error),
    Case("S7", "float32 subnormal / huge latents", "right cosines and radius, finite loss", s7_subnormal_and_huge_inputs_keep_scale_invariant_quantities),
    Case("S8", "project_to_sphere(x, nan); sigma <= 0 or NaN", "ValueError", s8_nan_radius_and_nonpositive_sigma_are_errors),
    Case("S9", "Ctrl-C on a multi-worker sweep", "workers stopped, said so, results of the finished", s9_ctrl_c_on_a_multi_worker_sweep, slow=True),
    Case("S9b", "Ctrl-C on a sweep with an idle worker", "both workers stopped, one line", s9b_ctrl_c_with_an_idle_worker, slow=True),
    Case("S9c", "a sweep worker killed (OOM killer)", "run failed with the reason; sweep ends", s9c_a_worker_killed_mid_run, slow=True),
    Case("S10", "stray .tmp files after a kill", "removed on the next start", s10_stray_tmp_files_are_removed_on_the_next_start),
    Case("T1", "malformed YAML (run and sweep config)", "one line naming file and line", t1_malformed_yaml),
    Case("T2", "a non-image file in an image folder", "skipped with a warning naming it", t2_non_image_file_in_an_image_folder),
    Case("T3", "truncated / empty / garbage checkpoint", "one line naming the file", t3_truncated_empty_or_garbage_checkpoint),
    Case("T4", "resume with a different architecture", "refused override; hand edit: one line", t4_resume_with_a_different_architecture),
    Case("T5", "checkpoint with a pickled object", "one line, no code run, no weights_only=False", t5_checkpoint_with_a_pickled_object),
    Case("T6", "checkpoint missing an entry", "one line naming the entry", t6_checkpoint_missing_an_entry),
    Case("T7", "disk full during a checkpoint write", "StorageError; old file intact; no tmp", t7_disk_full_during_a_checkpoint_write),
    Case("T8", "cut-off last line in metrics.jsonl", "dropped with a warning naming the file", t8_cut_off_last_line_in_metrics_jsonl),
    Case("T9", "report --out a directory", "one line", t9_report_out_is_a_directory),
    Case("T10", "corrupt eval/metrics.json", "one line naming the file", t10_corrupt_eval_metrics_json),
    Case("T10b", "corrupt eval/metrics.json in a sweep", "warned, evaluated again", t10b_corrupt_eval_metrics_json_in_a_sweep_is_evaluated_again),
    Case("T10c", "an evaluation cut off half-way, in a sweep", "warned, evaluated again", t10c_an_evaluation_cut_off_before_its_last_stage_is_not_done),
    Case("T11", "evaluate --device cuda without CUDA", "one line", t11_evaluate_on_cuda_without_cuda),
    Case("T12", "train.out_dir that is a file", "one line", t12_out_dir_that_is_a_file),
    Case("T13", "demo --latent-dim -5", "one line", t13_demo_with_a_negative_latent_dim),
    Case("C1", "unknown config key", "one line", c1_unknown_config_key),
    Case("C2", "missing config file", "one line", c2_missing_config_file),
    Case("C3", "--resume a directory without a checkpoint", "one line", c3_resume_without_a_checkpoint),
    Case("C4", "train into a directory holding a run", "one line", c4_train_into_a_finished_run),
    Case("C5", "unknown dataset name", "one line", c5_unknown_dataset),
    Case("N1", "evaluate/resume on other data, same name and shape", "error naming the difference", n1_fingerprint_catches_other_data_of_the_same_name_and_shape),
    Case("N2", "--debug", "the traceback", n2_cli_debug_flag_shows_the_traceback),
    Case("N3", "an internal error (a bug)", "keeps its traceback", n3_internal_errors_keep_their_traceback),
    Case("N4", "lock after success / failure / same process", "released; held is refused", n4_lock_is_released_after_success_and_failure),
    Case("N5", "files of a finished run", "no tmp left; all parse", n5_every_file_of_a_run_is_written_atomically),
    Case("N6", "empty / blank-line / damaged JSON-lines logs", "read, or error naming the line", n6_jsonl_reader_edge_cases),
    Case("N7", "extend a run whose schedule is sized by the total", "pinned (quench, warm-up) or warned (cyclical)", n7_schedules_sized_by_the_total_are_pinned_or_warned),
    Case("U1", "source.class = evilmod:X / this:X; load, CLI evaluate", "refused naming allow_classes; nothing imported", u1_code_named_by_a_run_is_never_run),
    Case("U2", "evaluate, train --resume to 3 epochs, report / load / sample", "STALE in report and metrics; stale sampler refitted", u2_an_evaluation_of_other_weights_is_shown_as_stale, slow=True),
    Case("U3", "train --resume during evaluate, evaluate during train", "each refused in one line, nothing written", u3_evaluate_and_training_never_interleave),
    Case("U4", "objective: deleted, latent_dim edited, fingerprint a list or edited", "resume / evaluate refuse naming the key", u4_edited_run_files_are_refused),
    Case("U4b", "data_fingerprint.json deleted, resume on other data", "refused (the weights carry the fingerprint)", u4b_a_deleted_fingerprint_is_no_way_to_other_data),
    Case("U5", "eval/*.png a link to a key / a FIFO / text; eval/ or config linked out; YAML alias bomb; huge or list metrics.json", "not embedded, no hang, refused in one line", u5_links_fifos_and_odd_files_in_a_run_are_refused),
    Case("U6", "16-bit PNGs, float TIFF, uint8 train with float 0..255 test", "scaled by 65535 / refused by name / refused", u6_image_modes_and_data_scales),
    Case("U7", "disk full while figures are written; eval/ a file", "metrics kept, one line per lost figure / one line", u7_a_failing_figure_or_a_full_disk_costs_only_figures, slow=True),
    Case("U8", "damaged sampler, pid 'abc', --config DIR, long name, dict loader, bad encode/decode, sample(1e9), meta", "one line each", u8_user_errors_that_were_tracebacks),
]


@pytest.mark.parametrize("case", [
    pytest.param(c, id=f"{c.id}-{c.check.__name__.split('_', 1)[1]}", marks=[pytest.mark.slow] if c.slow else [])
    for c in CASES
])
def test_case(case: Case, request: pytest.FixtureRequest, tmp_path: Path, capsys) -> None:
    """Run one row of the catalogue; the fixtures a check names are given to it."""
    import inspect

    params = inspect.signature(case.check).parameters
    kwargs = {name: request.getfixturevalue(name) for name in params if name not in ("tmp_path", "capsys")}
    kwargs.update({k: v for k, v in (("tmp_path", tmp_path), ("capsys", capsys)) if k in params})
    case.check(**kwargs)


def test_run_layout_is_the_documented_layout(tmp_path: Path) -> None:
    """Every run-directory path comes from RunLayout; these names are the documented ones
    (README, docs/design.md), so a change here is a change of the on-disk format."""
    from spherevae.io.layout import RunLayout

    layout = RunLayout(tmp_path)
    rel = {name: getattr(layout, name).relative_to(tmp_path).as_posix() for name in (
        "config", "metrics", "history", "checkpoint", "weights", "legacy_weights", "fingerprint",
        "eval_dir", "eval_metrics", "samplers_dir", "latents", "error", "lock", "readers_lock")}
    assert rel == {
        "config": "config.yaml", "metrics": "metrics.jsonl", "history": "history.jsonl",
        "checkpoint": "checkpoints/last.pt", "weights": "model.safetensors",
        "legacy_weights": "model.pt", "fingerprint": "data_fingerprint.json", "eval_dir": "eval",
        "eval_metrics": "eval/metrics.json", "samplers_dir": "samplers",
        "latents": "latents.safetensors", "error": "error.txt", "lock": ".lock",
        "readers_lock": ".readers.lock",
    }
    assert layout.sampler("vmf") == tmp_path / "samplers" / "vmf.safetensors"
    assert RunLayout(str(tmp_path)).root == tmp_path
