"""The sphere: hyperspherical coordinates (paper eqs 9-10), the theory of volume and
concentration (appendix A.3-A.4), and geometry of latents on the sphere (replica
angles, tangent spectra, great-circle interpolation).

Layer 2: imports only :mod:`spherevae._utils`; torch, numpy and scipy only.

Example::

    >>> import torch
    >>> from spherevae.geometry import hyperspherical_cosines
    >>> r, cos_phi = hyperspherical_cosines(torch.tensor([[3.0, 4.0, 0.0]]))
    >>> r.item(), cos_phi.tolist()
    (5.0, [[0.6000000238418579, 1.0]])
"""

from spherevae.geometry.coordinates import (
    cosines_backward,
    cosines_forward,
    from_hyperspherical,
    hyperspherical_cosines,
    project_to_sphere,
    sphere_radius,
    to_hyperspherical,
)
from spherevae.geometry.sphere import (
    frame_with_first_column,
    interpolate_linear,
    interpolate_sphere,
    perturb_tangent,
    replica_angles,
    rotate_e1_to,
    tangent_effective_dim,
    tangent_spectrum,
    unit_directions,
)
from spherevae.geometry.theory import (
    angular_volume_fraction,
    chi_mean,
    cos_phi_cdf,
    cos_phi_density,
    cos_phi_distribution,
    cos_phi_moments,
    equatorial_band_fraction,
    exact_angular_volume_fraction,
    log_angular_volume_fraction,
    log_radial_volume_fraction,
    log_volume_element,
    pairwise_angle_density,
    paper_concentration_bound,
    radial_volume_fraction,
    volume_element,
)

__all__ = [
    "angular_volume_fraction",
    "chi_mean",
    "cos_phi_cdf",
    "cos_phi_density",
    "cos_phi_distribution",
    "cos_phi_moments",
    "cosines_backward",
    "cosines_forward",
    "equatorial_band_fraction",
    "exact_angular_volume_fraction",
    "frame_with_first_column",
    "from_hyperspherical",
    "hyperspherical_cosines",
    "interpolate_linear",
    "interpolate_sphere",
    "log_angular_volume_fraction",
    "log_radial_volume_fraction",
    "log_volume_element",
    "pairwise_angle_density",
    "paper_concentration_bound",
    "perturb_tangent",
    "project_to_sphere",
    "radial_volume_fraction",
    "replica_angles",
    "rotate_e1_to",
    "sphere_radius",
    "tangent_effective_dim",
    "tangent_spectrum",
    "to_hyperspherical",
    "unit_directions",
    "volume_element",
]
