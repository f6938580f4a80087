"""Coordinates against plain-loop float64 references of paper eqs 9-10, edge cases,
gradients and property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spherevae.geometry.coordinates import (
    from_hyperspherical,
    hyperspherical_cosines,
    project_to_sphere,
    sphere_radius,
    to_hyperspherical,
)

# ----------------------------------------------------------------- references


def ref_to_hyperspherical(x: np.ndarray) -> tuple[float, np.ndarray]:
    """Eq 9 literally: one vector, a loop over k, arccos, float64."""
    n = x.shape[0]
    r = math.sqrt(sum(float(v) ** 2 for v in x))
    phi = np.zeros(n - 1)
    for k in range(n - 1):
        tail = math.sqrt(sum(float(v) ** 2 for v in x[k:]))
        phi[k] = 0.0 if tail == 0 else math.acos(max(-1.0, min(1.0, x[k] / tail)))
    if x[-1] < 0:
        phi[-1] = 2 * math.pi - phi[-1]
    return r, phi


def ref_from_hyperspherical(r: float, phi: np.ndarray) -> np.ndarray:
    """Eq 10 literally: products of sines in a loop."""
    n = phi.shape[0] + 1
    x = np.zeros(n)
    for k in range(n):
        prod = r
        for j in range(k):
            prod *= math.sin(phi[j])
        x[k] = prod * (math.cos(phi[k]) if k < n - 1 else 1.0)
    return x


def ref_cosines_masked(x: torch.Tensor) -> torch.Tensor:
    """A second formula: tails from an (n, n) mask, no cumulative sums."""
    n = x.shape[-1]
    idx = torch.arange(n)
    mask = (idx[None, :] >= idx[:, None]).to(x.dtype)  # row k keeps j >= k
    tails = torch.sqrt((x * x) @ mask.T)
    return (x / tails)[..., :-1]


# ------------------------------------------------------------- correctness


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 17, 64, 128, 512])
def test_matches_plain_loop_float64(n: int, generator: torch.Generator) -> None:
    x = torch.randn(6, n, dtype=torch.float64, generator=generator)
    x[0] *= 1e-3
    x[1] *= 1e3
    r, phi = to_hyperspherical(x)
    _, cos = hyperspherical_cosines(x)
    for i in range(x.shape[0]):
        r_ref, phi_ref = ref_to_hyperspherical(x[i].numpy())
        assert abs(r[i].item() - r_ref) <= 1e-12 * r_ref
        np.testing.assert_allclose(phi[i].numpy(), phi_ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cos[i].numpy(), np.cos(phi_ref), rtol=0, atol=1e-9)
        back = ref_from_hyperspherical(r_ref, phi_ref)
        np.testing.assert_allclose(from_hyperspherical(r[i], phi[i]).numpy(), back, atol=1e-9 * r_ref)


@pytest.mark.parametrize("n", [2, 3, 10, 200])
def test_from_hyperspherical_matches_loop_for_arbitrary_angles(n: int, generator: torch.Generator) -> None:
    phi = (torch.rand(5, n - 1, dtype=torch.float64, generator=generator) - 0.5) * 20
    r = torch.rand(5, dtype=torch.float64, generator=generator) * 4 - 1
    x = from_hyperspherical(r, phi)
    for i in range(5):
        np.testing.assert_allclose(x[i].numpy(), ref_from_hyperspherical(r[i].item(), phi[i].numpy()), atol=1e-12)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("n", [2, 3, 31, 256, 1000])
def test_round_trip(dtype: torch.dtype, tol: float, n: int, generator: torch.Generator) -> None:
    x = torch.randn(64, n, generator=generator, dtype=torch.float64).to(dtype)
    r, phi = to_hyperspherical(x)
    y = from_hyperspherical(r, phi)
    assert y.dtype == dtype
    err = ((y - x).norm(dim=-1) / x.norm(dim=-1)).max().item()
    assert err < tol


def test_cosines_second_formula_and_shapes(generator: torch.Generator) -> None:
    x = torch.randn(3, 4, 50, dtype=torch.float64, generator=generator)
    r, cos = hyperspherical_cosines(x)
    assert r.shape == (3, 4) and cos.shape == (3, 4, 49)
    torch.testing.assert_close(cos, ref_cosines_masked(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(r, x.norm(dim=-1), rtol=1e-14, atol=0)


def test_last_angle_convention() -> None:
    x = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, -1.0], [0.0, -1.0, 0.0], [0.0, 1.0, -0.0]], dtype=torch.float64)
    _, phi = to_hyperspherical(x)
    torch.testing.assert_close(phi[:, 1], torch.tensor([math.pi / 4, 7 * math.pi / 4, math.pi, 0.0], dtype=torch.float64))
    assert (phi[:, 0] == math.pi / 2).all()


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("n", [2, 3, 9])
def test_fast_backward_gradcheck(n: int, generator: torch.Generator) -> None:
    x = torch.randn(4, n, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hyperspherical_cosines(t), (x,))
    assert torch.autograd.gradcheck(lambda t: to_hyperspherical(t), (x,))
    phi = (torch.rand(4, n - 1, dtype=torch.float64, generator=generator) * 3).requires_grad_()
    r = torch.rand(4, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradcheck(from_hyperspherical, (r, phi))


@pytest.mark.parametrize("n", [2, 7, 300])
def test_fast_backward_equals_autograd_path(n: int, generator: torch.Generator) -> None:
    x = torch.randn(16, n, dtype=torch.float64, generator=generator)
    x[3, n // 2 :] = 0.0  # trailing zeros
    x[4] = 0.0
    w_r = torch.randn(16, dtype=torch.float64, generator=generator)
    w_c = torch.randn(16, n - 1, dtype=torch.float64, generator=generator)
    grads = []
    for fast in (True, False):
        xg = x.clone().requires_grad_()
        r, cos = hyperspherical_cosines(xg, fast=fast)
        ((r * w_r).sum() + (cos * w_c).sum()).backward()
        grads.append(xg.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_double_backward_slow_path_and_clear_error_on_fast(generator: torch.Generator) -> None:
    x = torch.randn(3, 5, dtype=torch.float64, generator=generator).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: hyperspherical_cosines(t, fast=False)[1], (x,))
    (g,) = torch.autograd.grad(hyperspherical_cosines(x)[1].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


# ------------------------------------------------------------------ edge cases

EDGE = {
    "zero": [0.0, 0.0, 0.0, 0.0],
    "pole": [1.0, 0.0, 0.0, 0.0],
    "south": [-2.0, 0.0, 0.0, 0.0],
    "trailing": [0.3, -0.4, 0.0, 0.0],
    "last_only": [0.0, 0.0, 0.0, -3.0],
    "leading_zeros": [0.0, 0.0, 1.0, 1.0],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(EDGE))
def test_edge_values_and_gradients_finite(dtype: torch.dtype, name: str) -> None:
    x = torch.tensor(EDGE[name], dtype=dtype).requires_grad_()
    r, cos = hyperspherical_cosines(x)
    r2, phi = to_hyperspherical(x)
    assert r.dtype == dtype and cos.dtype == dtype and phi.dtype == dtype
    for t in (r, cos, r2, phi):
        assert torch.isfinite(t).all()
    (r + cos.sum() + r2 + phi.sum()).backward()
    assert torch.isfinite(x.grad).all()
    ref_r, ref_phi = ref_to_hyperspherical(np.array(EDGE[name]))
    tol = 1e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-6
    np.testing.assert_allclose(phi.double().detach().numpy(), ref_phi, atol=tol * 4)
    assert abs(r.item() - ref_r) <= tol * (1 + ref_r)


def test_edge_conventions_exact() -> None:
    r, cos = hyperspherical_cosines(torch.zeros(2, 5))
    assert (r == 0).all() and (cos == 1).all()
    _, phi = to_hyperspherical(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
    assert phi.tolist() == [[0.0, 0.0, 0.0], [math.pi, 0.0, 0.0]] or torch.allclose(
        phi, torch.tensor([[0.0, 0, 0], [math.pi, 0, 0]])
    )
    # Gradient of the cosines at the pole is zero (a stationary point of x_1/||x||).
    x = torch.tensor([2.0, 0.0, 0.0], requires_grad=True)
    hyperspherical_cosines(x)[1].sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_no_overflow_or_underflow_float32(scale: float, generator: torch.Generator) -> None:
    x = torch.randn(8, 20, generator=generator, dtype=torch.float64)
    xs = (x * scale).float().requires_grad_()
    r, cos = hyperspherical_cosines(xs)
    _, cos_ref = hyperspherical_cosines(x)
    torch.testing.assert_close(cos.double(), cos_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(r.double(), x.norm(dim=-1) * scale, rtol=1e-5, atol=0)
    (r.sum() / scale + cos.sum()).backward()
    assert torch.isfinite(xs.grad).all()
    z = project_to_sphere(xs.detach(), 3.0)
    torch.testing.assert_close(z.norm(dim=-1), torch.full((8,), 3.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_huge_n(dtype: torch.dtype, generator: torch.Generator) -> None:
    n = 4096
    x = torch.randn(4, n, generator=generator).to(dtype).requires_grad_()
    r, phi = to_hyperspherical(x)
    _, cos = hyperspherical_cosines(x)
    y = from_hyperspherical(r, phi)
    (cos.sum() + r.sum() + phi.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y).all()
    if dtype == torch.bfloat16:
        # 4095 angles rounded to 8 bits cannot round-trip; check that the inverse adds
        # no error of its own beyond computing in float32 from the same rounded angles.
        ref = from_hyperspherical(r.detach().float(), phi.detach().float()).bfloat16()
        assert (y.detach().float() - ref.float()).abs().max() <= 1e-2 * ref.float().abs().max()
    else:
        tol = {torch.float32: 1e-4, torch.float64: 1e-10}[dtype]
        xd = x.detach().double()
        assert ((y.double() - xd).norm(dim=-1) / xd.norm(dim=-1)).max() < tol
    # Under a Gaussian, E[cos^2 phi_k] = 1 / (n - k + 1): the first angles sit near pi/2.
    assert cos[:, :100].double().abs().mean() < 0.05


def test_documented_limit_of_tiny_tails() -> None:
    # A tail 1e-30 below the largest entry is fine in float64 (its square is 1e-60) ...
    x = torch.tensor([1.0, 3e-30, -4e-30], dtype=torch.float64)
    _, cos = hyperspherical_cosines(x)
    torch.testing.assert_close(cos, torch.tensor([1.0, 0.6], dtype=torch.float64))
    # ... and one whose square underflows keeps at least its sign through the convention.
    _, cos = hyperspherical_cosines(torch.tensor([1.0, -1e-200, 0.0], dtype=torch.float64))
    assert cos.tolist() == [1.0, -1.0]


def test_bfloat16_close_to_float32(generator: torch.Generator) -> None:
    x = torch.randn(32, 100, generator=generator)
    _, c32 = hyperspherical_cosines(x)
    _, c16 = hyperspherical_cosines(x.bfloat16())
    assert (c16.float() - c32).abs().max() < 2e-2


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("fn", "arg", "match"),
    [
        (hyperspherical_cosines, torch.tensor(1.0), "shape"),
        (hyperspherical_cosines, torch.ones(3, 1), "n >= 2"),
        (to_hyperspherical, torch.ones(3, 1), "n >= 2"),
        (hyperspherical_cosines, torch.tensor([[1.0, float("nan")]]), "finite"),
        (to_hyperspherical, torch.tensor([[1.0, float("inf")]]), "finite"),
        (project_to_sphere, torch.tensor([[1.0, float("nan")]]), "finite"),
    ],
)
def test_bad_input_raises(fn, arg, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(arg) if fn is not project_to_sphere else fn(arg, 1.0)


def test_bad_input_types_and_shapes() -> None:
    with pytest.raises(TypeError):
        hyperspherical_cosines(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="no broadcasting"):
        from_hyperspherical(torch.ones(3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="no broadcasting"):
        from_hyperspherical(torch.ones(()), torch.ones(4, 2))
    with pytest.raises(ValueError, match="finite"):
        from_hyperspherical(torch.ones(2), torch.tensor([[0.1], [float("nan")]]))


# ------------------------------------------------------------ property tests

# Zeros or magnitudes in [1e-6, 1e6]: a dynamic range of 1e12, far inside float64's. (Tails
# below ~1e-154 x max|x| square to zero and count as zero tails: a documented limit.)
magnitudes = st.floats(1e-6, 1e6)
vectors = st.integers(2, 40).flatmap(
    lambda n: arrays(
        np.float64, (n,),
        elements=st.one_of(st.just(0.0), magnitudes, magnitudes.map(lambda v: -v)),
    )
)


@given(vectors)
def test_property_round_trip_norm_and_ranges(v: np.ndarray) -> None:
    x = torch.from_numpy(v)
    r, phi = to_hyperspherical(x)
    m = float(np.abs(v).max())
    norm = m * float(np.linalg.norm(v / m)) if m > 0 else 0.0  # scaled: numpy's norm underflows
    assert r.item() == pytest.approx(norm, rel=1e-12, abs=1e-300)
    assert (phi[:-1] >= 0).all() and (phi[:-1] <= math.pi).all()
    assert 0 <= phi[-1].item() < 2 * math.pi
    y = from_hyperspherical(r, phi)
    assert (y - x).abs().max().item() <= 1e-12 * max(r.item(), 1e-300) + 1e-300
    _, cos = hyperspherical_cosines(x)
    assert (cos.abs() <= 1).all()
    torch.testing.assert_close(cos, phi.cos(), rtol=0, atol=1e-12)


@given(vectors, st.floats(1e-6, 1e6))
def test_property_angles_invariant_to_positive_scaling(v: np.ndarray, c: float) -> None:
    x = torch.from_numpy(v)
    _, phi = to_hyperspherical(x)
    _, phi2 = to_hyperspherical(x * c)
    _, cos = hyperspherical_cosines(x)
    _, cos2 = hyperspherical_cosines(x * c)
    torch.testing.assert_close(cos2, cos, rtol=0, atol=1e-12)
    # Angles near 0 and 2 pi are the same point: compare on the circle.
    torch.testing.assert_close(torch.cos(phi2 - phi), torch.ones_like(phi), rtol=0, atol=1e-12)


@given(st.integers(2, 30), st.floats(0.1, 10.0))
def test_property_project_to_sphere(n: int, radius: float) -> None:
    g = torch.Generator().manual_seed(n)
    z = torch.randn(5, n, generator=g, dtype=torch.float64)
    p = project_to_sphere(z, radius)
    torch.testing.assert_close(p.norm(dim=-1), torch.full((5,), radius, dtype=torch.float64))
    # Same direction: the angles do not change.
    torch.testing.assert_close(hyperspherical_cosines(p)[1], hyperspherical_cosines(z)[1])


def test_project_zero_to_pole_with_zero_gradient() -> None:
    z = torch.zeros(2, 3, requires_grad=True)
    p = project_to_sphere(z, 2.0)
    assert p.tolist() == [[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
    p.sum().backward()
    assert (z.grad == 0).all()


def test_sphere_radius_is_the_rms_norm_of_the_standard_normal_and_used_everywhere():
    """sqrt(n) = sqrt(E|z|^2) for z ~ N(0, I_n) (paper eq 8), checked by Monte Carlo; the
    models, the samplers and the sqrt_n target all take it from this one helper."""
    from spherevae.distributions.samplers import fit_sampler
    from spherevae.losses.targets import RADIUS_TARGETS
    from spherevae.models.adapter import ModelAdapter
    from spherevae.models.config import ModelConfig
    from spherevae.models.vae import VAE

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 128):
        z = torch.randn(200_000, n, generator=g, dtype=torch.float64)
        assert sphere_radius(n) == pytest.approx(float(z.square().sum(1).mean().sqrt()), rel=5e-3)
    assert sphere_radius(128) == math.sqrt(128)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="latent dimension"):
            sphere_radius(bad)  # type: ignore[arg-type]
    vae = VAE(ModelConfig.from_preset("tiny", latent_dim=6, project_to_sphere=True))
    assert vae.radius == sphere_radius(6)
    assert ModelAdapter(vae, 6, project_to_sphere=True).radius == sphere_radius(6)
    assert RADIUS_TARGETS["sqrt_n"](9) == sphere_radius(9)
    prior = fit_sampler("prior_sphere", torch.randn(20, 5, generator=g))
    assert prior.sample(8, generator=g).norm(dim=1).tolist() == pytest.approx([sphere_radius(5)] * 8)
