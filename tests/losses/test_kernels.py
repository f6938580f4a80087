"""The Triton prior loss (spherevae.losses.kernels) against the torch implementation
(losses._FusedPriorLoss, itself tested against the term-by-term loss) and a float64
reference: values and gradients, odd sizes, zeros, poles, half inputs. Without a GPU the
kernels run under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spherevae.losses.kernels import MAX_TRITON_DIM, triton_available, triton_prior_loss
from spherevae.losses.prior import HypersphericalPriorLoss

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not triton_available(DEVICE), reason="triton not installed (or no interpreter on CPU)"
)


def _pair(n: int, preset: str = "full", **kw: object) -> tuple[HypersphericalPriorLoss, HypersphericalPriorLoss]:
    torch_loss = HypersphericalPriorLoss(n, preset, backend="torch", **kw).to(DEVICE)
    triton_loss = HypersphericalPriorLoss(n, preset, backend="triton", **kw).to(DEVICE)
    return torch_loss, triton_loss


def _value_and_grads(loss: torch.nn.Module, mu: torch.Tensor, sigma: torch.Tensor):
    mu = mu.detach().clone().requires_grad_(True)
    sigma = sigma.detach().clone().requires_grad_(True)
    value = loss(mu, sigma, validate=False)
    value.backward()
    return value.detach(), mu.grad, sigma.grad


def _latents(batch: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    mu = (torch.randn(batch, n, generator=g) + 0.3).to(dtype)
    sigma = torch.rand(batch, n, generator=g).add(0.05).to(dtype)
    return mu.to(DEVICE), sigma.to(DEVICE)


def _assert_close(a, b, *, rtol=2e-4, atol=1e-6):
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:  # a switched-off group gets no gradient in either
            assert x is None and y is None
            continue
        torch.testing.assert_close(x.float(), y.float(), rtol=rtol, atol=atol)


@pytest.mark.parametrize(("batch", "n"), [(2, 2), (3, 5), (17, 33), (64, 128), (9, 300)])
@pytest.mark.parametrize("preset", ["full", "moderate", "gaussian"])
def test_matches_torch_backend(batch: int, n: int, preset: str) -> None:
    mu, sigma = _latents(batch, n, seed=batch * n)
    ref, fast = _pair(n, preset)
    _assert_close(_value_and_grads(fast, mu, sigma), _value_and_grads(ref, mu, sigma))


def test_matches_float64_reference() -> None:
    """The float64 torch loss is the reference the float32 kernels approximate."""
    mu, sigma = _latents(40, 64, seed=3)
    ref = HypersphericalPriorLoss(64, backend="torch").double().to(DEVICE)
    fast = HypersphericalPriorLoss(64, backend="triton").to(DEVICE)
    want = _value_and_grads(ref, mu.double(), sigma.double())
    _assert_close(_value_and_grads(fast, mu, sigma), want, rtol=1e-4, atol=1e-6)


def test_switches_and_single_group() -> None:
    """Only the mu group (g = 1) and radius terms switched off."""
    mu, sigma = _latents(12, 20, seed=5)
    for kw in ({"use_sigma_terms": False}, {"use_radius_terms": False}, {"use_mu_terms": False}):
        ref, fast = _pair(20, **kw)
        _assert_close(_value_and_grads(fast, mu, sigma), _value_and_grads(ref, mu, sigma))


def test_zeros_poles_and_tiny_values() -> None:
    """Rows with zero tails (angle-0 convention, zero gradient), rows on the pole, a zero
    row, and values whose squares underflow in float32 (the row scaling keeps them)."""
    mu, sigma = _latents(8, 6, seed=7)
    mu[0, 3:] = 0.0  # zero tail
    mu[1] = torch.tensor([2.0, 0, 0, 0, 0, 0])  # the pole
    mu[2] = 0.0  # zero vector
    mu[3] = mu[3] * 1e-25  # squares underflow without scaling
    mu[4] = mu[4] * 1e15  # squares of squares (the radius variance) near the float32 limit
    ref, fast = _pair(6)
    got, want = _value_and_grads(fast, mu, sigma), _value_and_grads(ref, mu, sigma)
    assert all(torch.isfinite(t).all() for t in got)
    _assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_half_inputs_compute_in_float32() -> None:
    mu, sigma = _latents(16, 24, seed=9, dtype=torch.bfloat16)
    ref, fast = _pair(24)
    got, want = _value_and_grads(fast, mu, sigma), _value_and_grads(ref, mu, sigma)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.bfloat16
    _assert_close(got, want, rtol=1e-2, atol=1e-3)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(2, 20), n=st.integers(2, 70), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_property_matches_torch(batch: int, n: int, seed: int, scale: float) -> None:
    mu, sigma = _latents(batch, n, seed=seed)
    ref, fast = _pair(n)
    _assert_close(_value_and_grads(fast, mu * scale, sigma), _value_and_grads(ref, mu * scale, sigma),
                  rtol=5e-4, atol=1e-5)


def test_many_row_blocks_merge_exactly() -> None:
    """More rows than one program holds: the per-block moments are merged (Chan), and a
    large common offset (radius ~ 1e3, std ~ 1) does not cancel as E[r^2] - E[r]^2 would."""
    mu, sigma = _latents(130, 40, seed=11)
    mu = mu + 150.0
    ref, fast = _pair(40)
    _assert_close(_value_and_grads(fast, mu, sigma), _value_and_grads(ref, mu, sigma), rtol=1e-3)


def test_bad_input_is_refused() -> None:
    x = torch.zeros(2, 1, 4, device=DEVICE)
    t = torch.zeros(2, 4, device=DEVICE)
    with pytest.raises(ValueError, match="batch >= 2"):
        triton_prior_loss(x, t, t, t, t)
    with pytest.raises(TypeError, match="float32"):
        triton_prior_loss(torch.zeros(2, 3, 4, dtype=torch.float64, device=DEVICE), t, t, t, t)
    assert MAX_TRITON_DIM >= 4096


def test_auto_backend_on_cpu_is_torch() -> None:
    """'auto' never runs the interpreter for real work on a CPU."""
    loss = HypersphericalPriorLoss(8)
    assert loss.backend == "auto"
    assert not loss._use_triton(torch.zeros(2, 4, 8))


def test_auto_needs_a_recent_triton(monkeypatch) -> None:
    """torch's CUDA wheels bring their own triton: an old one must not be picked by 'auto'."""
    from spherevae.losses import kernels

    monkeypatch.setattr(kernels, "_triton_version", lambda: (2, 1))
    assert not kernels.triton_available("cpu")
    monkeypatch.setattr(kernels, "_triton_version", lambda: None)
    assert not kernels.triton_available("cpu")
    monkeypatch.setattr(kernels, "_triton_version", lambda: kernels.MIN_TRITON)
    assert kernels.triton_available("cpu") == kernels._interpreting()
