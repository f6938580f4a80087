"""spherevae: VAEs with many latent dimensions made into good generators by
compressing their latent volume in hyperspherical coordinates.

One subpackage per concept, imports running one way (docs/design.md, "The layers"):
``_utils`` -> ``io``, ``configs`` -> ``geometry``, ``data`` -> ``losses``,
``distributions``, ``models``, ``plots`` -> ``training`` -> ``evaluation`` -> ``api``,
``report`` -> ``experiments`` -> ``cli``. The mathematical core imports only torch, numpy
and scipy:

- :mod:`spherevae.geometry`: Cartesian <-> hyperspherical coordinates, O(batch*n); the
  sphere's geometry; volume and concentration of measure (appendix A.3-A.4).
- :mod:`spherevae.losses`: the beta-VAE loss and the hyperspherical prior loss (eqs 4-6).

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
