"""The demonstration compresses Gaussian latents toward the pole, as it says."""

import math

from spherevae.cli import main
from spherevae.demo import compress_latents, run_demo


def test_compression_shrinks_the_replica_angle_and_raises_the_cosines() -> None:
    rows = compress_latents(32, 128, steps=150, every=50, seed=1)
    first, last = rows[0], rows[-1]
    assert abs(first.mean_cos) < 0.05 and first.replica_angle > 1.3  # spread over the sphere
    assert last.replica_angle < 0.5 * first.replica_angle
    assert last.mean_cos > first.mean_cos + 0.15
    assert last.loss < first.loss
    assert abs(last.radius - math.sqrt(32)) < 0.2 * math.sqrt(32)  # radius target sqrt(n)


def test_run_demo_prints_theory_next_to_measurement() -> None:
    lines: list[str] = []
    run_demo(16, 64, seed=0, out=lines.append)
    text = "\n".join(lines)
    assert "1/sqrt(n-k+1) = 0.250" in text  # k = 1, n = 16
    assert "replica angle" in text


def test_cli_demo(capsys) -> None:
    assert main(["demo", "--latent-dim", "8", "--batch", "32"]) == 0
    assert "Minimising the compressed loss" in capsys.readouterr().out
