"""spherevae: VAEs with many latent dimensions made into good generators by
compressing their latent volume in hyperspherical coordinates.

The mathematical core imports only torch, numpy and scipy:

- :mod:`spherevae.geometry.coordinates`: Cartesian <-> hyperspherical coordinates, O(batch*n).
- :mod:`spherevae.losses.prior`: the beta-VAE loss and the hyperspherical prior loss (eqs 4-6).
- :mod:`spherevae.geometry.theory`: volume element, volume reduction, concentration of measure.

Training, evaluation, figures and the CLI need the ``full`` extra
(``pip install 'spherevae[full]'``). The Python API (:mod:`spherevae.api`)::

    run = spherevae.fit(model, train=x_train, test=x_test, objective="compressed")
    run = spherevae.load("runs/mine"); run.encode(x); run.reconstruct(x); run.sample(16)
"""

__version__ = "0.1.0"

__all__ = ["Run", "fit", "load"]


def __getattr__(name: str):  # lazy: `import spherevae` stays as light as the core
    if name in __all__:
        from spherevae import api

        return getattr(api, name)
    raise AttributeError(f"module 'spherevae' has no attribute {name!r}")
