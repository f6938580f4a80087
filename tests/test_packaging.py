"""Packaging: configs ship in the wheel and resolve by name; a built wheel installed into a
fresh virtual environment trains, evaluates and reports from an empty directory; a
missing optional dependency is one line naming the extra."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import spherevae
from spherevae.cli import main
from spherevae.configs import CONFIG_DIR, available, resolve
from spherevae.evaluation.fid import fid_sample_warning, frechet_distance

ROOT = Path(__file__).resolve().parents[1]


def test_configs_resolve_by_name_and_by_path(tmp_path, monkeypatch):
    assert {"digits-tiny", "fmnist-compressed-cpu", "fmnist-standard-cpu"} <= set(available())
    assert "fmnist-fig2" in available("sweep")
    assert resolve("digits-tiny") == CONFIG_DIR / "digits-tiny.yaml"
    assert resolve("digits-tiny.yaml") == CONFIG_DIR / "digits-tiny.yaml"
    assert resolve("fmnist-fig1", "sweep") == CONFIG_DIR / "sweeps" / "fmnist-fig1.yaml"
    # A file of one's own wins over a packaged name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits-tiny").write_text("train: {epochs: 1}\n")
    assert resolve("digits-tiny") == Path("digits-tiny")
    with pytest.raises(FileNotFoundError, match=r"'nope' does not exist .*digits-tiny"):
        resolve("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve("sub/digits-tiny.yaml")  # a path is never looked up as a name
    # The repository's configs/ path is the packaged folder (README commands keep working).
    assert (ROOT / "configs").resolve() == CONFIG_DIR


def test_missing_full_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "yaml", None)  # how Python marks a module as absent
    assert main(["train", "--config", "digits-tiny", f"train.out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("spherevae train: error: spherevae train needs the Python package 'pyyaml', "
                   "which is not installed: pip install 'spherevae[full]'")
    assert not any(tmp_path.iterdir())


def test_fid_guard():
    assert fid_sample_warning(128, 10_000, 128) is None
    msg = fid_sample_warning(20, 10_000, 128)
    assert "20 vs 10000" in msg and "not meaningful" in msg
    assert fid_sample_warning(10_000, 5, 128) is not None
    a = [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match=r"at least 2 samples in each set \(a covariance\), got 2 and 1"):
        frechet_distance(a, a[:1])


def _run(cmd, cwd, env):
    # The timeout only catches a hang: on the shared 2-core machine under load the wheel's
    # evaluate alone has taken over 300 s (2026-12-07), seconds when idle.
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_runs_from_an_empty_directory(tmp_path):
    # Build from a copy: an in-place build would leave build/ in the checkout (and reuse it).
    src = tmp_path / "src-copy"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(wheels), str(src)], tmp_path, os.environ.copy())
    (wheel,) = wheels.glob("spherevae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "spherevae/configs/fmnist-compressed-cpu.yaml" in names
    assert "spherevae/configs/sweeps/fmnist-fig2.yaml" in names and "spherevae/py.typed" in names
    # The shipped domain-v2 feature networks and their manifest (checksums checked on load).
    assert "spherevae/evaluation/weights/manifest.json" in names
    assert {f"spherevae/evaluation/weights/domain-v2-fashion-mnist-seed{s}.safetensors" for s in range(3)} <= set(names)
    meta = zipfile.ZipFile(wheel).read(f"spherevae-{spherevae.__version__}.dist-info/METADATA").decode()
    assert "Provides-Extra: mlflow" in meta and "License-Expression: MIT" in meta

    # A fresh venv holding only the wheel; the dependencies (torch & co) come from this
    # environment's site-packages through a .pth path entry, which does not load this
    # environment's editable install of spherevae.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, os.environ.copy()).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
               MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
          str(wheel)], tmp_path, env)

    work = tmp_path / "empty"
    work.mkdir()
    exe = str(env_dir / "bin" / "spherevae")
    where = _run([str(py), "-c", "import spherevae; print(spherevae.__file__)"], work, env).stdout
    assert where.startswith(str(env_dir)), where  # the wheel's copy, not the source tree
    assert _run([exe, "--version"], work, env).stdout.strip() == f"spherevae {spherevae.__version__}"
    out = _run([exe, "train", "--config", "digits-tiny", "train.epochs=1", "data.max_train=512"],
               work, env).stdout.splitlines()
    run = work / out[-1]
    assert run == work / "runs" / "digits-tiny" and "test RMSE (% of range)" in "\n".join(out)
    ev = _run([exe, "evaluate", str(run), "--num-samples", "100", "--tsne-points", "60",
               "--max-test", "40"], work, env)
    assert "paper's sampler (vmf)" in ev.stdout and "\nverdict: " in ev.stdout
    assert "not meaningful" in ev.stderr  # 40 test images < 128 feature dimensions
    assert "[1/6] loading the model and the dataset" in ev.stderr
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert any("not meaningful" in w for w in metrics["warnings"])
    _run([exe, "report", str(run), "--out", "report.html"], work, env)
    assert "FID domain vs recon, vmf" in (work / "report.html").read_text()


def test_readme_install_lists_every_extra_of_pyproject():
    """The Install section names each extra of pyproject.toml once, and the packages of `full`."""
    import re
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    listed = install.split("Extras:", 1)[1].split("A command that needs", 1)[0]
    named = re.findall(r"`([\w-]+)`", listed)
    assert sorted(named) == sorted(extras), named
    packages = {re.split(r"[<>=;\[ ]", dep, maxsplit=1)[0].lower() for dep in extras["full"]}
    full = listed.split("`full` (", 1)[1].split(")", 1)[0]
    assert packages == {p.strip().lower() for p in full.split(":", 1)[1].split(",")}
