"""Figures (matplotlib, imported when a figure is drawn): image grids, latent views (3D
sphere projection, t-SNE, histograms, spectra), training curves and the theory figures.

Layer 3: imports :mod:`spherevae.geometry`. Functions return a matplotlib figure;
:func:`save_figure` writes it.
"""

from spherevae.plots.curves import training_curves
from spherevae.plots.figure import (
    image_grid,
    new_figure,
    save_figure,
    show_grid,
    stacked_hist,
    to_numpy,
)
from spherevae.plots.images import interpolation_figure, reconstruction_figure, sampler_grid_figure
from spherevae.plots.latents import (
    latent_histograms,
    latent_spectrum_figure,
    project_to_3d_sphere,
    sphere_projection,
    tsne_figure,
)
from spherevae.plots.theory import (
    concentration_figure,
    cos_phi_distribution_figure,
    volume_reduction_figure,
)

__all__ = [
    "concentration_figure",
    "cos_phi_distribution_figure",
    "image_grid",
    "interpolation_figure",
    "latent_histograms",
    "latent_spectrum_figure",
    "new_figure",
    "project_to_3d_sphere",
    "reconstruction_figure",
    "sampler_grid_figure",
    "save_figure",
    "show_grid",
    "sphere_projection",
    "stacked_hist",
    "to_numpy",
    "training_curves",
    "tsne_figure",
    "volume_reduction_figure",
]
