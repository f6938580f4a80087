"""Tests for the vMF mixture (soft EM, Banerjee et al. 2005) and the vMF helpers in
spherevae.distributions.vmf.

References: a plain-loop EM (one sample and one component at a time, normaliser from
scipy.special.ive), scipy.stats.vonmises_fisher, and Monte Carlo moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import vonmises_fisher

from spherevae.distributions.vmf import VonMisesFisher, vmf_tangent_std
from spherevae.distributions.vmf_mixture import VonMisesFisherMixture
from spherevae.geometry.sphere import frame_with_first_column

F64 = torch.float64


def unit(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return x / x.norm()


def ref_log_c(n: int, kappa: float) -> float:
    """log C_n(kappa) from scipy's exponentially scaled Bessel function."""
    v = n / 2 - 1
    return v * math.log(kappa) - (v + 1) * math.log(2 * math.pi) - (math.log(sp.ive(v, kappa)) + kappa)


def loop_em(x: np.ndarray, init: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft-moVMF written out one sample and one component at a time."""
    num, n = x.shape
    k = init.shape[0]
    resp = np.zeros((num, k))
    for i in range(num):
        resp[i, int(np.argmax([x[i] @ init[j] for j in range(k)]))] = 1.0
    for _ in range(iters):
        weights, means, kappas = np.zeros(k), np.zeros((k, n)), np.zeros(k)
        for j in range(k):
            total, resultant = 0.0, np.zeros(n)
            for i in range(num):
                total += resp[i, j]
                resultant += resp[i, j] * x[i]
            weights[j] = total / num
            means[j] = resultant / np.linalg.norm(resultant)
            r = np.linalg.norm(resultant) / total
            kappas[j] = r * (n - r * r) / (1 - r * r)
        for i in range(num):
            logs = [math.log(weights[j]) + ref_log_c(n, kappas[j]) + kappas[j] * (means[j] @ x[i]) for j in range(k)]
            top = max(logs)
            norm = top + math.log(sum(math.exp(v - top) for v in logs))
            for j in range(k):
                resp[i, j] = math.exp(logs[j] - norm)
    return weights, means, kappas


def clusters(n: int, locs: list[torch.Tensor], kappas: list[float], counts: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    parts = [VonMisesFisher(m, k).sample(c, generator=g) for m, k, c in zip(locs, kappas, counts, strict=True)]
    return torch.cat(parts)


@pytest.mark.parametrize("n", [3, 7])
def test_em_matches_a_plain_loop_reference(n: int) -> None:
    locs = [unit(n, s) for s in range(3)]
    x = clusters(n, locs, [5.0, 10.0, 3.0], [25, 20, 15], seed=n)
    init = torch.stack([unit(n, 10 + s) for s in range(3)])
    ours = VonMisesFisherMixture.fit(x, 3, init=init, max_iter=6, tol=0.0)
    w, m, k = loop_em(x.numpy(), init.numpy(), 6)
    assert np.allclose(ours.weights.numpy(), w, rtol=1e-9, atol=1e-12)
    assert np.allclose(ours.means.numpy(), m, rtol=1e-9, atol=1e-12)
    assert np.allclose(ours.concentrations.numpy(), k, rtol=1e-9)
    assert ours.n_iter == 6


def test_recovers_well_separated_clusters() -> None:
    n = 10
    locs = [torch.eye(n, dtype=F64)[i] for i in range(3)]
    kappas, counts = [50.0, 100.0, 200.0], [1000, 1500, 2500]
    x = clusters(n, locs, kappas, counts, seed=0)
    fit = VonMisesFisherMixture.fit(x, 3, seed=1)
    order = (fit.means @ torch.stack(locs).T).argmax(0)  # fitted component of each true one
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(fit.weights[order], torch.tensor(counts, dtype=F64) / sum(counts), atol=0.01)
    assert bool(((fit.means[order] * torch.stack(locs)).sum(1) > 0.995).all())
    assert torch.allclose(fit.concentrations[order], torch.tensor(kappas, dtype=F64), rtol=0.1)
    again = VonMisesFisherMixture.fit(x, 3, seed=1)
    assert torch.equal(again.means, fit.means)  # seeded


def test_log_prob_against_scipy_and_one_component_case() -> None:
    n = 3
    w = torch.tensor([0.3, 0.7], dtype=F64)
    means = torch.stack([unit(n, 0), unit(n, 1)])
    kappas = torch.tensor([4.0, 40.0], dtype=F64)
    mix = VonMisesFisherMixture(w, means, kappas, dtype=F64)
    x = VonMisesFisher(unit(n, 2), 1.0).sample(50, generator=torch.Generator().manual_seed(0))
    ref = np.logaddexp(
        math.log(0.3) + vonmises_fisher(means[0].numpy(), 4.0).logpdf(x.numpy()),
        math.log(0.7) + vonmises_fisher(means[1].numpy(), 40.0).logpdf(x.numpy()),
    )
    assert np.allclose(mix.log_prob(x).numpy(), ref, rtol=1e-10)
    for n in (2, 128, 1000):
        one = VonMisesFisherMixture(torch.ones(1, dtype=F64), unit(n, 3)[None], torch.tensor([500.0], dtype=F64))
        vmf = VonMisesFisher(unit(n, 3), 500.0)
        y = vmf.sample(20, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(one.log_prob(y), vmf.log_prob(y), rtol=1e-12)


def test_sample_mean_matches_the_closed_form() -> None:
    n = 5
    mix = VonMisesFisherMixture(torch.tensor([0.25, 0.75], dtype=F64), torch.stack([unit(n, 0), unit(n, 1)]),
                                torch.tensor([2.0, 30.0], dtype=F64), dtype=F64)
    s = mix.sample(100_000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (100_000, n) and torch.allclose(s.norm(dim=1), torch.ones(100_000, dtype=F64))
    assert torch.allclose(s.mean(0), mix.mean, atol=0.01)  # MC s.e. < 0.0022


def test_edge_cases() -> None:
    # All rows at one point: kappa is capped, nothing is NaN.
    same = torch.tensor([[3.0, 4.0, 0.0]] * 20)
    fit = VonMisesFisherMixture.fit(same, 2, max_concentration=1e5)
    assert torch.isfinite(fit.concentrations).all() and float(fit.concentrations.max()) == 1e5
    assert torch.isfinite(fit.sample(10)).all() and torch.isfinite(fit.log_prob(same)).all()
    with pytest.raises(ValueError, match="finite"):
        VonMisesFisherMixture.fit(torch.tensor([[1.0, float("nan")], [1.0, 0.0]]), 1)
    with pytest.raises(ValueError, match="zero rows"):
        VonMisesFisherMixture.fit(torch.zeros(3, 2), 1)
    with pytest.raises(ValueError, match="n_components"):
        VonMisesFisherMixture.fit(torch.randn(3, 2), 4)
    with pytest.raises(ValueError, match="sum to 1"):
        VonMisesFisherMixture(torch.tensor([0.5, 0.6]), torch.eye(2), torch.ones(2))
    # n = 2 (the circle) and n = 1000 (where kappa must be ~n for a clear cluster).
    for n, kappa in ((2, 20.0), (1000, 5000.0)):
        x = clusters(n, [unit(n, 0), -unit(n, 0)], [kappa, kappa], [300, 300], seed=5)
        fit = VonMisesFisherMixture.fit(x, 2, seed=0)
        assert torch.allclose(fit.weights, torch.full((2,), 0.5, dtype=F64), atol=0.02)
        assert float((fit.means @ unit(n, 0)).abs().min()) > 0.98
    tensors, hparams = fit.to_state()
    back = VonMisesFisherMixture.from_state(tensors, hparams)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(back.sample(7, generator=g1), fit.sample(7, generator=g2))


@settings(max_examples=10, deadline=None)
@given(n=st.sampled_from([2, 3, 16, 128]), log_kappa=st.floats(-2.0, 4.0), seed=st.integers(0, 1000))
def test_vmf_tangent_std_matches_monte_carlo(n: int, log_kappa: float, seed: int) -> None:
    kappa = 10.0**log_kappa
    loc = unit(n, seed)
    x = VonMisesFisher(loc, kappa).sample(10_000, generator=torch.Generator().manual_seed(seed))
    tangent = x - (x @ loc)[:, None] * loc
    per_direction_var = float((tangent**2).sum(1).mean()) / (n - 1)
    expected = float(vmf_tangent_std(kappa, n)) ** 2
    # Relative s.e. of the mean of |t|^2 / (n - 1): at most sqrt(2/10_000) = 1.4%.
    assert per_direction_var == pytest.approx(expected, rel=0.08)
    assert float(vmf_tangent_std(0.0, n)) == pytest.approx(math.sqrt(1 / n))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 1000), pole=st.sampled_from([None, 1.0, -1.0]))
def test_frame_with_first_column_is_orthogonal(n: int, seed: int, pole: float | None) -> None:
    m = unit(n, seed) if pole is None else pole * torch.eye(n, dtype=F64)[0]
    frame = frame_with_first_column(m)
    assert torch.allclose(frame[:, 0], m, atol=1e-14)
    assert torch.allclose(frame.T @ frame, torch.eye(n, dtype=F64), atol=1e-13)
