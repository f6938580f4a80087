"""Write the theory figures (paper Figs 3-6) as PNGs.

    .venv/bin/python scripts/theory_figures.py [--out docs/figures/theory] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spherevae.plots.figure import save_figure
from spherevae.plots.theory import (
    concentration_figure,
    cos_phi_distribution_figure,
    volume_reduction_figure,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/figures/theory")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    figures = {
        "fig3_volume_reduction.png": volume_reduction_figure(),
        "fig4_5_concentration.png": concentration_figure(seed=args.seed),
        "fig6_cos_phi_distribution.png": cos_phi_distribution_figure(seed=args.seed),
    }
    for name, fig in figures.items():
        print(save_figure(fig, out / name))


if __name__ == "__main__":
    main()
