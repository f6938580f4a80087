"""The objective registry: one list of names, the Objective surface, adding one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spherevae.distributions.samplers import SAMPLERS
from spherevae.training.config import load_config
from spherevae.training.objectives import (
    OBJECTIVES,
    Objective,
    StandardObjective,
    StepOutput,
    register_objective,
)
from spherevae.training.runs import build_model, train
from spherevae.training.schedules import SCHEDULES

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_declares_what_the_rest_of_the_library_needs(name):
    cls = OBJECTIVES[name]
    assert isinstance(cls.default_project_to_sphere, bool)
    assert isinstance(cls.default_auto_balance, bool)
    assert cls.default_schedule in SCHEDULES
    assert cls.default_samplers and set(cls.default_samplers) <= set(SAMPLERS)


def test_objective_instances_satisfy_the_protocol(tmp_path):
    for name, cls in OBJECTIVES.items():
        cfg = load_config(TINY, [f"train.out_dir={tmp_path}", f"objective.name={name}",
                                 "objective.dataset_weight=10.0"])
        model = build_model(cfg, (1, 8, 8))
        obj = cls.from_config(cfg, model.latent_dim)
        assert isinstance(obj, Objective) and isinstance(obj, torch.nn.Module)
        out = obj(model, torch.rand(4, 1, 8, 8), 1.0, torch.Generator().manual_seed(0))
        names = [e["name"] for e in obj.configure_optimizers(model, cfg.optim)]
        assert set(out.losses) == set(names) == set(obj.parameter_groups(model))
        assert set(out.terms) == {"loss", "reconstruction", "latent"}


class _L1Objective(StandardObjective):
    """A user's objective: L1 reconstruction + beta * KLD (touches only the registry)."""

    default_samplers = ("prior",)

    def compute(self, model, x, multiplier, generator):
        out = model(x, generator)
        recon = (out.x_hat - x).abs().flatten(1).sum(1).mean()
        kld = (-0.5 * (1 + out.logvar - out.mu.square() - out.logvar.exp())).sum(1).mean()
        total = recon + self.beta * multiplier * kld
        return StepOutput({"model": total}, {"loss": total, "reconstruction": recon, "latent": kld})


def test_registering_an_objective_makes_configs_accept_it(tmp_path):
    with pytest.raises(ValueError, match=r"objective\.name must be one of"):
        load_config(TINY, [f"train.out_dir={tmp_path}", "objective.name=l1"])
    register_objective("l1", _L1Objective)
    try:
        cfg = load_config(TINY, [f"train.out_dir={tmp_path}", "objective.name=l1", "train.epochs=1"])
        run = train(cfg)
        assert (run / "model.safetensors").is_file()
        with pytest.raises(ValueError, match="already registered"):
            register_objective("l1", _L1Objective)
    finally:
        del OBJECTIVES["l1"]


def test_register_rejects_a_class_that_is_no_objective():
    class Bare:
        pass

    with pytest.raises(TypeError, match="must subclass"):
        register_objective("bare", Bare)  # type: ignore[arg-type]
    assert "bare" not in OBJECTIVES
