"""What GraphedStep refuses, checked without a GPU (the captured step itself is tested in
tests/test_gpu.py, which needs CUDA)."""

from __future__ import annotations

import pytest
import torch

from spherevae.training.cudagraph import GraphedStep, check_capturable


def _adam(**kw) -> dict[str, torch.optim.Optimizer]:
    return {"model": torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], **kw)}


def test_fp16_autocast_is_refused() -> None:
    with pytest.raises(ValueError, match="fp16 autocast needs a GradScaler"):
        check_capturable(_adam(lr=1e-3), lambda: torch.autocast("cpu", dtype=torch.float16))


@pytest.mark.parametrize("kw", [{"lr": 1e-3}, {"lr": 1e-3, "capturable": True},
                                {"lr": torch.tensor(1e-3), "capturable": True}])
def test_an_lr_that_the_graph_would_freeze_is_refused(kw) -> None:
    """A float lr is baked into the captured kernels, and a CPU tensor cannot be read there."""
    with pytest.raises(ValueError, match="must be capturable with its lr a CUDA tensor"):
        check_capturable(_adam(**kw), lambda: torch.autocast("cpu", dtype=torch.bfloat16))


def test_a_cpu_model_is_refused() -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="need the model on a CUDA device"):
        GraphedStep(model, object(), {}, {}, ("loss",), torch.Generator())
