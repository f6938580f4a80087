"""Objectives: the beta-VAE loss (eqs 1-2), its batch-statistics form (eq 3/17) and
the hyperspherical prior loss that compresses the latent volume (eqs 4-6).

Conventions (see ``docs/objectives.md`` for the formulas and derivations):

- Latents ``mu`` and ``sigma`` are ``(batch, n)``; angles are indexed ``k = 1..n-1`` in
  formulas and sit at index ``k-1`` of per-angle tensors of length ``n-1``.
- Batch statistics are taken over dim 0 (:mod:`spherevae.losses.stats`). The batch standard
  deviation is the *population* one (divide by ``N``): it makes eq 16 an exact identity,
  and it is a function of the global batch only (see :mod:`spherevae.losses.stats` for DDP).
  The authors' released-code penalty (:mod:`spherevae.losses.authors`) keeps their unbiased
  variance.
- A standard deviation needs at least two samples: batch size 1 raises ``ValueError``.

The target profiles and presets live in :mod:`spherevae.losses.targets`, the batch statistics
and the eq 3/17 KLD (:func:`batch_stat_kld`) in :mod:`spherevae.losses.stats`, the authors' penalty in :mod:`spherevae.losses.authors`; their public
names are re-exported here, so ``from spherevae.losses.prior import ...`` keeps working.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from spherevae._utils.validation import (
    check_choice,
    check_mu,
    check_same_shape,
)
from spherevae.geometry.coordinates import cosines_backward, cosines_forward
from spherevae.losses.authors import AUTHORS_SIGMA_ANGLE_WEIGHTS
from spherevae.losses.stats import (
    LatentStats,
    _check_sigma,
    _compute_dtype,
    _sum_terms,
    latent_batch_stats,
)
from spherevae.losses.targets import (
    _OPTIONS,
    _SWITCHES,
    _TARGET_KEYS,
    PRESETS,
    _check_range,
    _k,
    _resolve_angle,
    _resolve_radius,
)

__all__ = [
    "LOSS_BACKENDS",
    "SIGMA_WEIGHTINGS",
    "HypersphericalPriorLoss",
]

# The authors' code weighs its latent terms 1000 mu_angles + 300 mu_radius + W_sigma
# sigma_angles + 500 sigma_radius (W_sigma: AUTHORS_SIGMA_ANGLE_WEIGHTS).
_AUTHORS_MU_ANGLE_WEIGHT = 1000.0

# objective.loss_overrides.sigma_weighting: the factor on the sigma-angle gains relative to
# the mu-angle gains. "paper": the paper's gains, 1/sqrt(k+1) for every angle term. "authors":
# the authors' relative weight for Fashion-MNIST, W_sigma / 1000 = 225; "authors-<dataset>"
# for each data set of their table (mnist 50, cifar10 500, ...).
SIGMA_WEIGHTINGS: dict[str, float] = {
    "paper": 1.0,
    "authors": AUTHORS_SIGMA_ANGLE_WEIGHTS["fashion-mnist"] / _AUTHORS_MU_ANGLE_WEIGHT,
    **{f"authors-{name}": w / _AUTHORS_MU_ANGLE_WEIGHT for name, w in AUTHORS_SIGMA_ANGLE_WEIGHTS.items()},
}


# --------------------------------------------------------------------------------------
# Standard beta-VAE (eqs 1-2)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Hyperspherical prior loss (eqs 4-6)
# --------------------------------------------------------------------------------------


def _std_square_error(var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(sqrt(var) - target)^2`` with finite gradients at ``var = 0``.

    Where the target is 0 the term is the variance itself (exact, no sqrt). Elsewhere the
    variance is clamped at the dtype's smallest normal number before the sqrt, which only
    changes batches whose variance is already below ~1e-38 (float32): no bias on normal
    batches, and the gradient ``(s - b) / s * dvar`` stays finite.
    """
    std = torch.sqrt(var.clamp_min(torch.finfo(var.dtype).tiny))
    return torch.where(target > 0, (std - target).square(), var)


# How HypersphericalPriorLoss computes eqs 4-5: "torch" (``_FusedPriorLoss``, any device
# and dtype), "triton" (spherevae.losses.kernels: three launches, for GPUs), "auto" (Triton on
# CUDA where installed, else torch).
LOSS_BACKENDS = ("auto", "torch", "triton")


class _FusedPriorLoss(torch.autograd.Function):
    """``(x (g, B, n), targets/gains (g, n)) -> scalar`` eqs 4-5 with an analytic backward.

    Forward: ``c = [cos phi(x), |x|]`` per row, ``m = mean_B c``, ``v = mean_B (c - m)^2``,
    ``L = sum alpha (m - a)^2 + beta E(v, b)`` with ``E = (sqrt v - b)^2`` (``v`` where b = 0).
    Backward: ``dL/dc = (2 alpha (m - a) + 2 beta E'(v) (c - m)) / B`` (the mean's path
    through ``c - m`` cancels since deviations sum to 0), then the O(n) cosine backward.
    One autograd node instead of ~50: on a GPU the loss is launch-bound, not arithmetic-bound.
    """

    @staticmethod
    def forward(ctx, x, mean_target, std_target, mean_gain, std_gain):
        r, cos, xs, inv_s, inv_tails = cosines_forward(x)
        coords = torch.cat([cos, r.unsqueeze(-1)], -1)  # (g, B, n)
        mean = coords.mean(1, keepdim=True)
        dev = coords - mean
        var = dev.square().mean(1)
        # As in _std_square_error: the clamp only touches variances below ~1e-38 (float32).
        std = var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()
        positive = std_target > 0
        std_err = torch.where(positive, (std - std_target).square(), var)
        loss = (mean_gain * (mean.squeeze(1) - mean_target).square() + std_gain * std_err).sum()
        d_var = std_gain * torch.where(positive, 1.0 - std_target / std, torch.ones_like(std))
        d_mean = 2.0 * mean_gain * (mean.squeeze(1) - mean_target)
        ctx.save_for_backward(xs, inv_s, inv_tails, cos, dev, d_mean, d_var)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        xs, inv_s, inv_tails, cos, dev, d_mean, d_var = ctx.saved_tensors
        batch = dev.shape[1]
        g = (grad / batch) * torch.addcmul(d_mean.unsqueeze(1), dev, d_var.unsqueeze(1), value=2.0)
        grad_x = cosines_backward(g[..., -1], g[..., :-1], cos, xs, inv_s, inv_tails)
        return grad_x, None, None, None, None


class _UnknownOption(TypeError, ValueError):
    """An option the loss does not take: a ``ValueError`` like every bad argument here, and
    the ``TypeError`` of an unexpected keyword, which the objectives report under
    ``objective.loss_overrides``."""


class HypersphericalPriorLoss(nn.Module):
    """The KLD-like loss in hyperspherical coordinates (eqs 4-5), a scalar.

    For ``g`` in (mu, sigma), with ``c_k = cos phi_k(g)`` and ``r = |g|``::

        sum_k alpha_{g,k} (E_b[c_k] - a_{g,k})^2 + beta_{g,k} (std_b[c_k] - b_{g,k})^2
        + alpha_{g,r} (E_b[r] - a_{g,r})^2 + beta_{g,r} (std_b[r] - b_{g,r})^2

    ``std_b`` is the population std over the batch (dim 0). Eq 6 is
    ``reconstruction + beta * loss(mu, sigma)``.

    Presets (``PRESETS``; k = 1..n-1; ``o_k = 1/sqrt(n-k+1)`` are the cosines of the
    all-ones vector, :func:`ones_cosines`; the paper prints them as 1/sqrt(k+1), the same
    vector indexed from the other end, kept as the ``paper_printed`` profile)::

        preset    a_mu,k        b_mu,k          a_mu,r       b_mu,r    source
        full      1             o_k             sqrt(n)      0         Fig 15, eq 8
        moderate  o_k           o_k             sqrt(n)      0         Fig 14, A.8
        equator   0             o_k             sqrt(n)      0         A.7
        uniform   0             1/sqrt(n-k+1)   sqrt(n)      0         exact uniform moments
        gaussian  0             1/sqrt(n-k+1)   E chi(n)     std chi(n) N(0, I_n) moments

        every preset, sigma:  a_sigma,k = o_k, b_sigma,k = 0,
                              a_sigma,r = 0.6 sqrt(n - 0.5), b_sigma,r = sqrt(0.5)
                              (the authors' released code; the paper gives none)

    Gains default to ``gain_scale / sqrt(k+1)`` for every angle term (section 4.2) and to
    ``gain_scale`` for the radius terms. ``sigma_weighting`` (a key of ``SIGMA_WEIGHTINGS``,
    default ``"paper"``) multiplies the sigma-angle gains: ``"authors"`` weighs them 225x
    the mu-angle gains, as the authors' code does for Fashion-MNIST.

    Example (eq 6 with the paper's full compression)::

        >>> import torch
        >>> loss = HypersphericalPriorLoss(8, preset="full")
        >>> mu = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        >>> sigma = torch.full((64, 8), 0.1)
        >>> value = loss(mu, sigma)            # a scalar, differentiable in mu and sigma
        >>> value.shape, bool(value > 0)
        (torch.Size([]), True)
        >>> sorted(loss.terms(mu, sigma))[:2]  # the separate terms, for logging
        ['mu_angle_mean', 'mu_angle_std']
        >>> at_pole = torch.zeros(64, 8)
        >>> at_pole[:, 0] = 8 ** 0.5           # every mu at the pole, on the sphere of radius sqrt(n)
        >>> loss.terms(at_pole, sigma)["mu_angle_mean"].item()   # E_b[cos phi_k] = 1 = a_mu,k
        0.0

    Args:
        latent_dim: ``n >= 2``.
        preset: a key of ``PRESETS``.
        backend: a key of ``LOSS_BACKENDS``: ``auto`` (default) runs the Triton kernels of
            :mod:`spherevae.losses.kernels` on CUDA float32/half inputs where triton is installed
            and the torch implementation elsewhere; ``torch`` or ``triton`` force one.
        **overrides: any of ``{mu,sigma}_{angle,radius}_{mean,std}_{target,gain}``
            (angle values: a float, a ``(n-1,)`` tensor, or a name in ``ANGLE_TARGETS``;
            radius values: a float or a name in ``RADIUS_TARGETS``), ``gain_scale``, and the
            switches ``use_mu_terms``, ``use_sigma_terms``, ``use_radius_terms``, and
            ``sigma_weighting``.
    """

    # Buffers of _register_fused, declared for the type checker (register_buffer sets them).
    _fused_mean_target: torch.Tensor
    _fused_std_target: torch.Tensor
    _fused_mean_gain: torch.Tensor
    _fused_std_gain: torch.Tensor

    def __init__(
        self, latent_dim: int, preset: str = "full", *, backend: str = "auto", **overrides: object
    ) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 2:
            raise ValueError(f"latent_dim must be an int >= 2, got {latent_dim!r}")
        check_choice(preset, "preset", PRESETS)
        check_choice(backend, "backend", LOSS_BACKENDS)
        self.backend = backend
        for key in overrides:
            if key not in _OPTIONS:  # an unexpected keyword (TypeError) that is also a bad value
                raise _UnknownOption(f"override must be one of {sorted(_OPTIONS)}, got {key!r}")
        n = latent_dim
        options: dict[str, object] = {
            **PRESETS[preset],
            "gain_scale": 1.0,
            "use_mu_terms": True,
            "use_sigma_terms": True,
            "use_radius_terms": True,
            "sigma_weighting": "paper",
            **overrides,
        }
        scale = options["gain_scale"]
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale < 0
        ):
            raise ValueError(f"gain_scale must be a finite number >= 0, got {scale!r}")
        for key in _SWITCHES:
            if not isinstance(options[key], bool):
                raise TypeError(f"{key} must be a bool, got {options[key]!r}")
        self.latent_dim = n
        self.preset = preset
        self.use_mu_terms = bool(options["use_mu_terms"])
        self.use_sigma_terms = bool(options["use_sigma_terms"])
        self.use_radius_terms = bool(options["use_radius_terms"])
        weighting = str(options["sigma_weighting"])
        check_choice(weighting, "sigma_weighting", SIGMA_WEIGHTINGS)
        self.sigma_weighting = weighting
        default_angle_gain = float(scale) / torch.sqrt(_k(n) + 1.0)
        for key in _TARGET_KEYS:
            gain_key = key.replace("_target", "_gain")
            gain = options.get(gain_key)
            if "_angle_" in key:
                target = _resolve_angle(options[key], key, n)
                factor = SIGMA_WEIGHTINGS[weighting] if key.startswith("sigma_") else 1.0
                if gain is not None and factor != 1.0:
                    raise ValueError(f"{gain_key} and sigma_weighting {weighting!r} both set the "
                                     "sigma-angle gains: give one")
                gain_t = factor * default_angle_gain if gain is None else _resolve_angle(gain, gain_key, n)
                low, high = (-1.0, 1.0) if "_mean_" in key else (0.0, 1.0)
            else:
                target = _resolve_radius(options[key], key, n)
                gain_t = (
                    torch.tensor(float(scale), dtype=torch.float64)
                    if gain is None
                    else _resolve_radius(gain, gain_key, n)
                )
                low, high = 0.0, math.inf
            _check_range(target, key, low, high)
            _check_range(gain_t, gain_key, 0.0)
            self.register_buffer(key, target.to(torch.get_default_dtype()))
            self.register_buffer(gain_key, gain_t.to(torch.get_default_dtype()))
        self._register_fused()

    def _register_fused(self) -> None:
        """Targets and gains of all enabled terms packed as ``(g, n)`` tensors (``g``
        groups among mu, sigma; columns: the n-1 angles, then the radius), so that
        :meth:`forward` is a handful of kernels instead of one sequence per term: on a
        GPU the per-kernel launch cost, not the arithmetic, is what a loss this small costs."""
        groups = [g for g, use in (("mu", self.use_mu_terms), ("sigma", self.use_sigma_terms)) if use]
        self._fused_groups = tuple(groups)
        for what in ("mean_target", "std_target", "mean_gain", "std_gain"):
            rows = []
            for g in groups:
                angle = getattr(self, f"{g}_angle_{what}").expand(self.latent_dim - 1)
                radius = getattr(self, f"{g}_radius_{what}").reshape(1)
                if not self.use_radius_terms and what.endswith("gain"):
                    radius = torch.zeros_like(radius)
                rows.append(torch.cat([angle, radius]))
            packed = torch.stack(rows) if rows else torch.zeros(0, self.latent_dim)
            self.register_buffer(f"_fused_{what}", packed, persistent=False)

    def _use_triton(self, stacked: torch.Tensor) -> bool:
        """The ``backend`` choice for this batch: ``auto`` takes the Triton kernels for
        float32 CUDA tensors when triton is installed, ``torch`` never, ``triton`` always
        (an error where it cannot run)."""
        if self.backend == "torch":
            return False
        from spherevae.losses.kernels import MAX_TRITON_DIM, triton_available

        usable = stacked.dtype == torch.float32 and self.latent_dim <= MAX_TRITON_DIM
        if self.backend == "auto":
            return usable and stacked.is_cuda and triton_available(stacked.device)
        if not (usable and triton_available(stacked.device)):
            raise RuntimeError(
                f"backend='triton' needs triton and a CUDA device (or TRITON_INTERPRET=1 on "
                f"CPU), float32/half inputs and latent_dim <= {MAX_TRITON_DIM}; got "
                f"{stacked.dtype} on {stacked.device}, latent_dim {self.latent_dim}"
            )
        return True

    def extra_repr(self) -> str:
        return (
            f"backend={self.backend!r}, "
            f"latent_dim={self.latent_dim}, preset={self.preset!r}, use_mu_terms={self.use_mu_terms}, "
            f"use_sigma_terms={self.use_sigma_terms}, use_radius_terms={self.use_radius_terms}"
        )

    def batch_stats(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> LatentStats:
        """The statistics this loss needs (only the enabled groups are computed)."""
        return latent_batch_stats(
            mu,
            sigma,
            include_mu=self.use_mu_terms,
            include_sigma=self.use_sigma_terms,
            validate=validate,
        )

    def terms(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> dict[str, torch.Tensor]:
        """The enabled terms, each a scalar (keys ``{mu,sigma}_{angle,radius}_{mean,std}``)."""
        check_mu(mu, self.latent_dim, validate=False)
        return self.terms_from_stats(self.batch_stats(mu, sigma, validate=validate))

    def terms_from_stats(self, stats: LatentStats) -> dict[str, torch.Tensor]:
        """The terms from precomputed (e.g. merged across DDP ranks) batch statistics."""
        if any(m is not None for m in stats) and stats.count < 2:
            raise ValueError(f"the batch statistics need at least 2 samples, got {stats.count}")
        out: dict[str, torch.Tensor] = {}
        for group, cos_m, r_m, use in (
            ("mu", stats.mu_cos, stats.mu_radius, self.use_mu_terms),
            ("sigma", stats.sigma_cos, stats.sigma_radius, self.use_sigma_terms),
        ):
            if not use:
                continue
            if cos_m is None or r_m is None:
                raise ValueError(f"stats lacks the {group} moments that this loss uses")
            parts = [("angle", cos_m)] + ([("radius", r_m)] if self.use_radius_terms else [])
            for part, m in parts:
                prefix = f"{group}_{part}"
                dtype = m.mean.dtype
                a = getattr(self, f"{prefix}_mean_target").to(dtype)
                b = getattr(self, f"{prefix}_std_target").to(dtype)
                alpha = getattr(self, f"{prefix}_mean_gain").to(dtype)
                beta = getattr(self, f"{prefix}_std_gain").to(dtype)
                out[f"{prefix}_mean"] = (alpha * (m.mean - a).square()).sum()
                out[f"{prefix}_std"] = (beta * _std_square_error(m.var(), b)).sum()
        return out

    def from_stats(self, stats: LatentStats) -> torch.Tensor:
        """The loss from precomputed batch statistics (see the module doc on DDP)."""
        return _sum_terms(self.terms_from_stats(stats), stats)

    def forward(
        self, mu: torch.Tensor, sigma: torch.Tensor, *, validate: bool = True
    ) -> torch.Tensor:
        """The loss, a scalar. ``mu``, ``sigma``: ``(batch, n)``, ``batch >= 2``.

        Equal to ``sum(self.terms(mu, sigma).values())`` (tested, values and gradients),
        computed on the packed ``(g, batch, n)`` coordinates by one autograd node with an
        analytic backward (first derivatives only; differentiate ``terms`` for more).
        """
        check_mu(mu, self.latent_dim, validate=validate)
        if mu.shape[0] < 2:
            raise ValueError(f"the batch statistics need at least 2 samples, got {mu.shape[0]}")
        if not self._fused_groups:
            return torch.zeros((), dtype=mu.dtype, device=mu.device)
        if self.use_sigma_terms:
            _check_sigma(sigma, validate=validate)
            check_same_shape(mu, sigma, "mu", "sigma")
        parts = [mu if g == "mu" else sigma for g in self._fused_groups]
        stacked = _compute_dtype(torch.stack(parts) if len(parts) > 1 else parts[0][None])
        dtype = stacked.dtype
        if self._use_triton(stacked):
            from spherevae.losses.kernels import triton_prior_loss

            return triton_prior_loss(
                stacked,
                self._fused_mean_target,
                self._fused_std_target,
                self._fused_mean_gain,
                self._fused_std_gain,
            )
        loss = _FusedPriorLoss.apply(
            stacked,
            self._fused_mean_target.to(dtype),
            self._fused_std_target.to(dtype),
            self._fused_mean_gain.to(dtype),
            self._fused_std_gain.to(dtype),
        )
        return loss  # float32 for half-precision inputs (their batch variances need it)
