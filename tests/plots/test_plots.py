"""Figures: the data drawn equal the inputs; pure helpers against plain loops."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spherevae import plots
from spherevae.geometry.sphere import interpolate_sphere
from spherevae.report.plane import mse_fid_plane, sampler_colours


def test_image_grid_places_images():
    imgs = torch.zeros(3, 1, 2, 2)
    imgs[1] = 1.0
    grid = plots.image_grid(imgs, nrow=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 1) and grid.dtype == np.uint8
    assert (grid[1:3, 4:6] == 255).all() and (grid[1:3, 1:3] == 0).all()


def test_project_to_3d_sphere_matches_loop():
    z = torch.randn(20, 128, generator=torch.Generator().manual_seed(0))
    p = plots.project_to_3d_sphere(z)
    for i in range(20):
        v = np.array([z[i, :42].mean(), z[i, 42:84].mean(), z[i, 84:].mean()], dtype=np.float64)
        assert np.allclose(p[i], v / np.linalg.norm(v))


@given(st.integers(2, 40), st.floats(0.1, 10.0))
def test_slerp_keeps_radius_and_endpoints(n, radius):
    g = torch.Generator().manual_seed(n)
    z0 = torch.randn(n, generator=g, dtype=torch.float64)
    z1 = torch.randn(n, generator=g, dtype=torch.float64)
    z0, z1 = radius * z0 / z0.norm(), radius * z1 / z1.norm()
    path = interpolate_sphere(z0, z1, 7)
    assert torch.allclose(path.norm(dim=1), torch.full((7,), radius, dtype=torch.float64))
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1)


def test_slerp_parallel_and_antipodal_are_finite():
    z = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    for other in (z.clone(), -z):
        path = interpolate_sphere(z, other, 5)
        assert torch.isfinite(path).all()
        assert torch.allclose(path.norm(dim=1), torch.ones(5, dtype=torch.float64))


def test_figures_render_to_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(200, 12, generator=g)
    labels = torch.randint(0, 3, (200,), generator=g)
    figs = {
        "rec": plots.reconstruction_figure(torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)),
        "sphere": plots.sphere_projection(mu, labels),
        "samplers": plots.sampler_grid_figure({"vmf": torch.rand(8, 1, 8, 8), "prior": torch.rand(8, 1, 8, 8)},
                                              {"vmf": 12.345}),
        "hist": plots.latent_histograms(mu, mu.abs(), mu, torch.rand(200, 11)),
        "curves": plots.training_curves([{"epoch": 0, "train_rmse_percent": 3.0, "beta": 1.0}, {"epoch": 1}]),
        "plane": mse_fid_plane([
            {"n": 16, "beta": 1, "objective": "standard", "mse": 10, "fid": 5},
            {"n": 32, "beta": 1, "objective": "standard", "mse": 8, "fid": 7},
            {"n": 16, "beta": 1, "objective": "compressed", "mse": 10, "fid": 3},
        ], fid_label="fid_domain_recon"),
    }
    for name, fig in figs.items():
        path = plots.save_figure(fig, tmp_path / f"{name}.png")
        with Image.open(path) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    ax = figs["plane"].axes[0]
    styles = sorted(line.get_linestyle() for line in ax.get_lines())
    assert styles == ["-", "--"]  # compressed solid, standard dashed
    assert ax.get_ylabel() == "fid_domain_recon"
    titles = [a.get_title() for a in figs["samplers"].axes]
    assert titles == ["vmf\nFID 12.3", "prior"]
    with pytest.raises(ValueError, match="no samples"):
        plots.sampler_grid_figure({})


def _series_styles(fig) -> dict[str, tuple[str, str, str]]:
    from matplotlib.colors import to_hex

    return {line.get_label(): (to_hex(line.get_color()), line.get_marker(), line.get_fillstyle())
            for line in fig.axes[0].get_lines()}


def test_mse_fid_plane_gives_every_series_its_own_colour_and_marker() -> None:
    from spherevae.distributions.samplers import SAMPLERS

    samplers = list(SAMPLERS)  # 8 for standard, 7 for compressed: the walkthrough's 15 series
    rows = [{"n": n, "beta": 1.0, "objective": objective, "sampler": s, "mse": 10 - n / 8 + i, "fid": 50 - i}
            for objective, names in (("standard", samplers), ("compressed", samplers[1:]))
            for i, s in enumerate(names) for n in (8, 16)]
    fig = mse_fid_plane(rows)
    styles = _series_styles(fig)
    assert len(styles) == 15
    assert len({(colour, marker) for colour, marker, _ in styles.values()}) == 15
    for s in samplers:  # one colour per sampler, whatever the objective
        assert len({styles[k][0] for k in styles if f" · {s} · " in k}) == 1
    assert len({styles[k][0] for k in styles}) == len(samplers)
    for objective in ("standard", "compressed"):  # one marker per objective
        assert len({styles[k][1] for k in styles if k.startswith(f"{objective} · ")}) == 1
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "colour: sampler, marker: objective"
    assert {t.get_text() for t in legend.get_texts()} == {
        *samplers, "standard", "compressed", "standard VAE (dashed, across n)", "compressed (solid, across n)"}
    # Several betas: the marker tells them apart, the sampler keeps its colour.
    two = mse_fid_plane([{**r, "beta": b} for r in rows[:4] for b in (0.5, 2)])
    assert len({(c, m) for c, m, _ in _series_styles(two).values()}) == len(_series_styles(two)) == 4
    assert "marker: objective and β" in two.axes[0].get_legend().get_title().get_text()


def test_mse_fid_plane_without_samplers_and_with_many_series() -> None:
    # A sweep's rows name no sampler: colour per β (the same for both objectives), marker per objective.
    rows = [{"n": 8, "beta": b, "objective": o, "mse": b, "fid": b + len(o)}
            for o in ("standard", "compressed") for b in (0.1, 1, 10)]
    styles = _series_styles(mse_fid_plane(rows))
    assert len({(c, m) for c, m, _ in styles.values()}) == len(styles) == 6
    assert styles["standard · β=1"][0] == styles["compressed · β=1"][0]
    assert styles["standard · β=1"][1] != styles["compressed · β=1"][1]
    # More samplers than tab20 and more objectives than markers: still all distinct.
    names = [f"user{i}" for i in range(25)]
    assert len(set(sampler_colours(names).values())) == 25
    many = [{"n": 8, "beta": 1, "objective": f"obj{j}", "sampler": s, "mse": 1, "fid": 1}
            for j in range(15) for s in ("vmf", "gmm")]
    styles = _series_styles(mse_fid_plane(many))
    assert len(set(styles.values())) == len(styles) == 30


def test_mse_fid_plane_draws_the_given_spreads_as_bars() -> None:
    from matplotlib.container import ErrorbarContainer

    rows = [{"n": n, "beta": 1, "objective": o, "mse": 10 - n / 8, "fid": f, "fid_err": e}
            for o, f, e in (("standard", 40.0, 3.0), ("compressed", 60.0, 5.0)) for n in (8, 16)]
    rows.append({**rows[0], "fid": 44.0, "fid_err": 1.0})  # a second seed of one point: averaged
    ax = mse_fid_plane(rows).axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    # The bars' half-lengths: the (averaged) errors of each point, centred on the (averaged) FID.
    spans = sorted(tuple(np.round(seg[:, 1], 6)) for c in bars for seg in c.lines[2][0].get_segments())
    assert spans == [(37.0, 43.0), (40.0, 44.0), (55.0, 65.0), (55.0, 65.0)]
    assert not [c for c in mse_fid_plane([{k: v for k, v in r.items() if k != "fid_err"} for r in rows])
                .axes[0].containers if isinstance(c, ErrorbarContainer)]


def test_project_rejects_too_few_dims():
    with pytest.raises(ValueError, match="n >= 3"):
        plots.project_to_3d_sphere(np.zeros((4, 2)))


def test_theory_figures(tmp_path) -> None:
    from spherevae.plots.figure import save_figure
    from spherevae.plots.theory import (
        concentration_figure,
        cos_phi_distribution_figure,
        volume_reduction_figure,
    )

    fig = volume_reduction_figure(ns=(3, 20))
    assert len(fig.axes) == 2
    angular, radial = (line.get_ydata() for line in fig.axes[1].get_lines())
    assert angular[100] < radial[100]  # angles remove more volume at the same scale
    fig = concentration_figure(ns=(2, 50), samples=2000)
    assert len(fig.axes) == 5
    fig = cos_phi_distribution_figure(n=12, samples=4000)
    measured, exact, paper = (line.get_ydata() for line in fig.axes[-1].get_lines())
    assert abs(measured - exact).max() < 0.05 < abs(measured - paper).max()
    for i, f in enumerate((fig,)):
        assert save_figure(f, tmp_path / f"t{i}.png").stat().st_size > 1000


def test_latent_figures_without_labels_warn_nothing() -> None:
    # A flat image folder has no labels: no colour map, so matplotlib has nothing to warn about.
    import warnings

    from spherevae.plots.latents import sphere_projection, tsne_figure

    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fig in (sphere_projection(z), tsne_figure(z)):
            assert fig.axes
