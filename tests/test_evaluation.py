"""Tests for the sampler choice and the generation diagnostics of spherevae.evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spherevae.evaluation import (
    TANGENT_NOISE_SCALES,
    EvalConfig,
    _tangent_noise_fids,
    samplers_for,
)
from spherevae.metrics import FID
from spherevae.sampling import SAMPLERS, VonMisesFisher


def test_every_objective_gets_its_prior_and_every_fitted_sampler() -> None:
    fitted = {name for name, spec in SAMPLERS.items() if spec.fitted}
    assert samplers_for("standard")[0] == "prior"
    for objective in ("compressed", "authors"):
        assert samplers_for(objective)[0] == "vmf"
        assert set(samplers_for(objective)) == fitted | {"prior_sphere"}
    assert set(samplers_for("standard")) == fitted | {"prior"}
    for objective in ("standard", "compressed", "authors"):
        names = samplers_for(objective)
        assert len(set(names)) == len(names)


def test_samplers_for_is_explicit() -> None:
    assert samplers_for("standard", ("gmm", "esag", "gmm")) == ("gmm", "esag")
    with pytest.raises(ValueError, match="objective must be one of"):
        samplers_for("mystery")
    with pytest.raises(ValueError, match="evaluate sampler must be one of"):
        samplers_for("standard", ("flow",))


class _Decoder(nn.Module):
    """A fixed smooth decoder from R^6 to 1x3x4 images."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # weights of the test network only
        self.net = nn.Sequential(nn.Linear(6, 12), nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 1, 3, 4)


def test_tangent_noise_fids_grow_with_the_noise_scale() -> None:
    n = 6
    g = torch.Generator().manual_seed(0)
    latents = VonMisesFisher(torch.ones(n), 40.0).sample(3000, generator=g).float() * math.sqrt(n)
    model = _Decoder().eval()
    with torch.no_grad():
        x_hat = model.decode(latents)
    fid = FID(nn.Flatten(), "flat")
    out = _tangent_noise_fids(model, latents, x_hat, fid, fid.features(x_hat), EvalConfig(progress=False), g)
    vmf = VonMisesFisher.fit(latents)
    a = float(vmf.mean_resultant_length)
    assert out["vmf_tangent_std"] == pytest.approx(math.sqrt(a / float(vmf.concentration)), rel=1e-5)
    fids = [out[f"tangent_noise_fid_flat_{c:g}x"] for c in TANGENT_NOISE_SCALES]
    rmse = [out[f"tangent_noise_rmse_percent_{c:g}x"] for c in TANGENT_NOISE_SCALES]
    assert fids == sorted(fids) and fids[0] > 0
    assert rmse == sorted(rmse) and rmse[0] > 0


def test_latent_spectrum_figure_draws_both_panels(tmp_path) -> None:
    from spherevae.plots import latent_spectrum_figure, save_figure

    sigma = torch.cat([torch.tensor([6.8]), torch.full((7,), 0.01)])
    fig = latent_spectrum_figure(sigma, torch.tensor([0.5, 0.1, 0.01, 0.0]), vmf_tangent_var=0.05)
    assert len(fig.axes) == 2
    assert "1 dims above" in fig.axes[0].get_legend().get_texts()[1].get_text()
    assert save_figure(fig, tmp_path / "s.png").stat().st_size > 0
