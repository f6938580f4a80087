"""spherevae: VAEs with many latent dimensions made into good generators by
compressing their latent volume in hyperspherical coordinates.

The mathematical core imports only torch, numpy and scipy:

- :mod:`spherevae.coordinates`: Cartesian <-> hyperspherical coordinates, O(batch*n).
- :mod:`spherevae.losses`: the beta-VAE loss and the hyperspherical prior loss (eqs 4-6).
- :mod:`spherevae.theory`: volume element, volume reduction, concentration of measure.

Training, evaluation, figures and the CLI need the ``full`` extra
(``pip install 'spherevae[full]'``).
"""

__version__ = "0.1.0"
