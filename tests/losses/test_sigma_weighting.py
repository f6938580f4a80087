"""Sigma weighting presets of the compressed objective: the paper's gains and the authors'
relative weight of the sigma-angle terms, checked against a hand computation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from spherevae.losses import SIGMA_WEIGHTINGS, HypersphericalPriorLoss
from spherevae.losses.targets import ones_cosines

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


def _cosines_loop(v: np.ndarray) -> np.ndarray:
    """cos phi_k = v_k / |(v_k, ..., v_n)|, k = 1..n-1, one row at a time."""
    n = v.shape[1]
    return np.array([[row[k] / np.linalg.norm(row[k:]) for k in range(n - 1)] for row in v])


def test_authors_weighting_is_225_times_the_sigma_angle_terms_by_hand():
    n, g = 6, torch.Generator().manual_seed(0)
    mu = torch.randn(40, n, generator=g, dtype=torch.float64)
    sigma = torch.rand(40, n, generator=g, dtype=torch.float64) + 0.05
    paper = HypersphericalPriorLoss(n, "full").double().terms(mu, sigma)
    authors = HypersphericalPriorLoss(n, "full", sigma_weighting="authors").double().terms(mu, sigma)
    assert SIGMA_WEIGHTINGS["authors"] == 225_000 / 1000
    # Hand computation of the sigma-angle mean term: sum_k 225/sqrt(k+1) (E_b cos_k - o_k)^2.
    cos = _cosines_loop(sigma.numpy()).mean(0)
    k = np.arange(1, n)
    by_hand = (225.0 / np.sqrt(k + 1) * (cos - ones_cosines(n).numpy()) ** 2).sum()
    assert float(authors["sigma_angle_mean"]) == pytest.approx(by_hand, rel=1e-6)  # float32 gain buffers
    for name in paper:
        factor = 225.0 if name.startswith("sigma_angle") else 1.0
        assert float(authors[name]) == pytest.approx(factor * float(paper[name]), rel=1e-6), name


def test_sigma_weighting_is_a_named_option_and_reaches_the_compressed_objective():
    from spherevae.training.config import load_config
    from spherevae.training.objectives import build_objective

    cfg = load_config(TINY, ["objective.name=compressed", "objective.loss_overrides.sigma_weighting=authors"])
    loss = build_objective(cfg, 8).latent_loss
    default = build_objective(load_config(TINY, ["objective.name=compressed"]), 8).latent_loss
    assert default.sigma_weighting == "paper" and loss.sigma_weighting == "authors"
    assert torch.allclose(loss.sigma_angle_std_gain, 225 * default.sigma_angle_std_gain)
    assert torch.equal(loss.mu_angle_std_gain, default.mu_angle_std_gain)
    with pytest.raises(ValueError, match=r"sigma_weighting must be one of"):
        HypersphericalPriorLoss(8, sigma_weighting="author")
    with pytest.raises(ValueError, match=r"both set the sigma-angle gains"):
        HypersphericalPriorLoss(8, sigma_weighting="authors", sigma_angle_std_gain=1.0)
