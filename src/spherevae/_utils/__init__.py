"""Internal helpers shared by every layer: argument validation (one-line errors naming
the argument), optional-dependency checks, nested-mapping helpers.

Layer 0 (the bottom): imports nothing of spherevae. Not a public API.
"""

from spherevae._utils.mappings import flatten_keys
from spherevae._utils.memory import check_fits_in_memory, physical_memory
from spherevae._utils.optional import MissingExtraError, require
from spherevae._utils.validation import (
    check_choice,
    check_finite,
    check_floating,
    check_latents,
    check_mu,
    check_positive,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "MissingExtraError",
    "check_choice",
    "check_finite",
    "check_fits_in_memory",
    "check_floating",
    "check_latents",
    "check_mu",
    "check_positive",
    "check_same_shape",
    "check_tensor",
    "flatten_keys",
    "physical_memory",
    "require",
]
