"""An objective and a fitted sampler are torch citizens: they work inside a real
``lightning.LightningModule`` (issue 20), with no RunConfig and no dataset name."""

from __future__ import annotations

import math

import pytest
import torch

from spherevae.distributions import fit_sampler
from spherevae.geometry import project_to_sphere
from spherevae.models import VAE, ModelConfig
from spherevae.training import CompressedObjective, OptimConfig

lightning = pytest.importorskip("lightning")

N = 8


class LitCompressedVAE(lightning.LightningModule):
    """The user's own module: our VAE, our objective, Lightning's loop."""

    def __init__(self) -> None:
        super().__init__()
        config = ModelConfig.from_preset("tiny", image_shape=(1, 8, 8), latent_dim=N, project_to_sphere=True)
        self.vae = VAE(config)
        self.objective = CompressedObjective(latent_dim=N, beta=1.0)
        self.noise = torch.Generator().manual_seed(0)
        self.losses: list[float] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.objective(self.vae, batch[0], 1.0, self.noise)
        self.losses.append(float(out.terms["loss"].detach()))
        return out.losses["model"]

    def configure_optimizers(self):  # the objective's own, in Lightning's shape
        return [{"optimizer": e["optimizer"], "lr_scheduler": e["lr_scheduler"]}
                for e in self.objective.configure_optimizers(self.vae, OptimConfig(lr=3e-3))]


def test_compressed_objective_and_a_sampler_inside_a_lightning_module(tmp_path) -> None:
    images = torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=32)
    lit = LitCompressedVAE()
    trainer = lightning.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(lit, loader)
    assert len(lit.losses) == 8 and all(math.isfinite(v) for v in lit.losses)
    assert lit.losses[-1] < lit.losses[0]  # it trained

    # The latent loss is a submodule: its targets are in the LightningModule's state.
    state = lit.state_dict()
    assert torch.equal(state["objective.latent_loss.mu_angle_mean_target"], torch.ones(N - 1))
    assert state["objective._extra_state"] == {"beta": 1.0, "balanced": False}
    fresh = LitCompressedVAE()
    fresh.load_state_dict(state)  # round-trips, buffers and beta included

    # A sampler fitted to the trained model's latents generates on its sphere.
    with torch.no_grad():
        mu, _ = lit.vae.encode(images)
        latents = project_to_sphere(mu, math.sqrt(N))
        sampler = fit_sampler("vmf", latents, seed=0)
        z = sampler.sample(16)
        x_new = lit.vae.decode(z)
    assert z.norm(dim=1) == pytest.approx(torch.full((16,), math.sqrt(N)), rel=1e-5)
    assert x_new.shape == (16, 1, 8, 8)


def test_an_objective_follows_to_like_any_module() -> None:
    objective = CompressedObjective(latent_dim=N)
    assert objective.to(torch.float64).latent_loss.mu_angle_mean_target.dtype == torch.float64
    meta = CompressedObjective(latent_dim=N).to("meta")
    assert meta.latent_loss.mu_angle_mean_target.device.type == "meta"
    assert dict(objective.named_children()).keys() == {"latent_loss"}
