"""The Python API (spherevae.fit / load / Run) with a user's own model, not ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import spherevae
from _user_models import MLPVAE
from spherevae.data.tensors import TensorData, as_tensor_data
from spherevae.io.weights import load_weights
from spherevae.training.config import load_config
from spherevae.training.runs import train

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
TINY = TESTS.parent / "configs" / "digits-tiny.yaml"


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """1797 real 8x8 digit images as float vectors in [0, 1]."""
    return torch.tensor(load_digits().data / 16.0, dtype=torch.float32)


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory) -> spherevae.Run:
    out = tmp_path_factory.mktemp("api") / "mine"
    return spherevae.fit(
        MLPVAE(), train=digits[:1500], test=digits[1500:], objective="compressed",
        epochs=2, batch_size=64, out_dir=out, seed=0,
    )


def test_fit_trains_a_user_model_and_writes_a_pickle_free_run(fitted, digits):
    files = {p.name for p in fitted.run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "model.safetensors", "latents.safetensors"} <= files
    assert not list(fitted.run_dir.glob("*.pt"))  # final weights: safetensors only
    state, spec = load_weights(fitted.run_dir / "model.safetensors")
    assert spec == {
        "kind": "adapter", "latent_dim": 8, "project_to_sphere": True,
        "source": {"class": "_user_models:MLPVAE", "kwargs": {}},
    }
    assert set(state) == {f"inner.{k}" for k in MLPVAE().state_dict()}
    assert [r["epoch"] for r in fitted.history] == [0, 1]
    # compressed objective: z on the sphere of radius sqrt(n), the paper's default
    assert fitted.model.radius == pytest.approx(8**0.5)
    z = fitted.test_latents()
    assert z.shape == (297, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.full((297,), 8**0.5))
    # the user's own weights are unchanged by the wrapping: decode == their decode
    mu, _ = fitted.encode(digits[:4])
    x_hat = fitted.reconstruct(digits[:4])
    inner = fitted.model.inner
    want = inner.decode(8**0.5 * mu / mu.norm(dim=1, keepdim=True))
    torch.testing.assert_close(x_hat, want.detach())


def test_training_improves_reconstruction(digits, tmp_path):
    """A real property of the fit: the test error falls over epochs (not only 'it ran')."""
    run = spherevae.fit(
        MLPVAE(), train=digits[:1500], test=digits[1500:], objective="standard",
        epochs=6, batch_size=64, out_dir=tmp_path / "std", seed=0,
    )
    errs = [r["test_mse_sum"] for r in run.history]
    assert errs[-1] < 0.8 * errs[0]
    assert run.model.radius is None  # standard: no projection by default


def test_sample_saves_the_fitted_sampler_and_reuses_it(fitted):
    a = fitted.sample(16, "vmf", seed=3)
    assert a.shape == (16, 64) and torch.isfinite(a).all()
    path = fitted.run_dir / "samplers" / "vmf.safetensors"
    assert path.is_file()
    # Reused from its file: the test latents are no longer needed, the draw is identical.
    latents = fitted.run_dir / "latents.safetensors"
    backup = latents.read_bytes()
    latents.unlink()
    try:
        torch.testing.assert_close(fitted.sample(16, "vmf", seed=3), a, rtol=0, atol=0)
    finally:
        latents.write_bytes(backup)
    assert not (fitted.run_dir / "latents.safetensors").stat().st_size == 0
    # headline sampler of the compressed objective is the vMF
    torch.testing.assert_close(fitted.sample(16, seed=3), a, rtol=0, atol=0)


def test_sample_checks_num_before_any_work(fitted):
    for bad, error in ((-1, ValueError), (2.5, TypeError), ((2, 3), TypeError), (True, TypeError)):
        with pytest.raises(error, match=r"^num must be a non-negative int, got"):
            fitted.sample(bad, "gaussian")
    assert not (fitted.run_dir / "samplers" / "gaussian.safetensors").exists()  # nothing was fitted
    assert fitted.sample(0, "vmf").shape == (0, 64)
    with pytest.raises(ValueError, match=r"^sampler must be one of \[.*'vmf'.*\], got 'vfm'"):
        fitted.sample(3, "vfm")


def test_load_in_a_fresh_process_gives_the_same_model(fitted, digits, tmp_path):
    """spherevae.load in another interpreter: the recorded class is never imported unless
    the caller allows it; allowed by its recorded name, it rebuilds the same model."""
    x = digits[:6]
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import json, sys, torch, spherevae
        try:
            spherevae.load({str(fitted.run_dir)!r})
            raise SystemExit("loaded without allow_classes")
        except ValueError as exc:
            assert "allow_classes=['_user_models:MLPVAE']" in str(exc), exc
        assert "_user_models" not in sys.modules  # refused before any import
        run = spherevae.load({str(fitted.run_dir)!r}, allow_classes=["_user_models:MLPVAE"])
        x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)
        mu, logvar = run.encode(x)
        torch.save({{"mu": mu, "logvar": logvar, "x_hat": run.reconstruct(x),
                     "s": run.sample(5, sampler="gaussian_sphere", seed=1)}}, {str(tmp_path / 'out.pt')!r})
        print(json.dumps({{"n": run.latent_dim, "type": type(run.model.inner).__name__}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"n": 8, "type": "MLPVAE"}
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    mu, logvar = fitted.encode(x)
    torch.testing.assert_close(got["mu"], mu)
    torch.testing.assert_close(got["logvar"], logvar)
    torch.testing.assert_close(got["x_hat"], fitted.reconstruct(x))
    torch.testing.assert_close(got["s"], fitted.sample(5, sampler="gaussian_sphere", seed=1))


def test_a_model_defined_in_a_function_needs_model_to_load(digits, tmp_path):
    class Local(MLPVAE):
        pass

    run = spherevae.fit(Local(), train=digits[:300], test=digits[300:400], objective="standard",
                        epochs=1, batch_size=100, out_dir=tmp_path / "local", seed=0)
    with pytest.raises(ValueError, match=r"pass model=<an instance of it> to spherevae\.load"):
        spherevae.load(run.run_dir)
    again = spherevae.load(run.run_dir, model=Local())
    torch.testing.assert_close(again.reconstruct(digits[:3]), run.reconstruct(digits[:3]))


def test_load_a_cli_made_run_and_sample(tmp_path):
    cfg = load_config(TINY, [f"train.out_dir={tmp_path}", "train.epochs=1", "objective.name=compressed"])
    run_dir = train(cfg)
    run = spherevae.load(run_dir)
    assert type(run.model).__name__ == "VAE"
    x = run.sample(4, seed=0)  # headline: vmf, fitted on the config's test split
    assert x.shape == (4, *run.model.config.image_shape)
    assert (run_dir / "latents.safetensors").is_file()
    assert run.metrics == {}  # not evaluated yet


def test_data_forms_are_equivalent(digits):
    x, y = digits[:20], torch.arange(20) % 10
    ref = as_tensor_data((x, y))
    ds = torch.utils.data.TensorDataset(x, y)
    for form in (ds, torch.utils.data.DataLoader(ds, batch_size=7), (x, y)):
        got = as_tensor_data(form)
        torch.testing.assert_close(got.images, ref.images)
        torch.testing.assert_close(got.labels, ref.labels)
    assert as_tensor_data(x.numpy()).labels is None


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (torch.full((4, 3), float("nan")), ValueError, "NaN or inf"),
        (torch.zeros(5), ValueError, r"shape \(N, \.\.\.\)"),
        (torch.zeros(4, 3, dtype=torch.int32), ValueError, "uint8 or floating point"),
        ("images/", TypeError, "must be a tensor"),
    ],
)
def test_bad_data_is_one_clear_error(data, error, match):
    with pytest.raises(error, match=match):
        as_tensor_data(data)


def test_bad_models_and_arguments(digits, tmp_path):
    with pytest.raises(TypeError, match=r"must have an encode\(\) method"):
        spherevae.fit(nn.Linear(64, 8), train=digits[:10], test=digits[10:20], out_dir=tmp_path / "a")
    with pytest.raises(ValueError, match=r"objective(\.name)? must be one of"):
        spherevae.fit(MLPVAE(), train=digits[:10], test=digits[10:20], objective="kl", out_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="differ in shape"):
        spherevae.fit(MLPVAE(), train=digits[:10], test=digits[10:20, :32], out_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        spherevae.load(tmp_path / "nothing")


def test_corrupt_weights_file_is_a_clear_error(fitted, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(fitted.run_dir, copy)
    blob = (copy / "model.safetensors").read_bytes()
    (copy / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors.*not a readable safetensors file"):
        spherevae.load(copy)


def test_batches_scale_uint8_and_keep_floats(digits):
    """uint8 data is read as images (/255); float data is used as given."""
    from spherevae.data.loader import BatchLoader

    u8 = (digits[:8] * 255).round().to(torch.uint8)
    (xu, _), = BatchLoader(TensorData(u8), 8, shuffle=False)
    (xf, _), = BatchLoader(TensorData(digits[:8] * 3.0), 8, shuffle=False)
    torch.testing.assert_close(xu, u8.float() / 255.0)
    torch.testing.assert_close(xf, digits[:8] * 3.0)


def test_runs_from_before_safetensors_still_load(tmp_path):
    """A run dir with the old pickled-dict model.pt (read with weights_only=True) loads."""
    from spherevae.io.checkpoint import save_checkpoint

    cfg = load_config(TINY, [f"train.out_dir={tmp_path}", "train.epochs=1"])
    run_dir = train(cfg)
    state, spec = load_weights(run_dir / "model.safetensors")
    save_checkpoint({"model": state, "model_config": spec["model_config"]}, run_dir / "model.pt")
    (run_dir / "model.safetensors").unlink()
    x = torch.rand(3, *spherevae.load(run_dir).model.config.image_shape)
    old = spherevae.load(run_dir)
    for k, v in old.model.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert old.reconstruct(x).shape == x.shape
