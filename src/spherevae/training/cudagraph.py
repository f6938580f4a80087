"""A whole training step (forward, objective, backward, clipping, optimiser) as one CUDA graph.

A VAE this size is launch-bound on a modern GPU: at batch 200 the CIFAR-10 ResNet VAE's
step is a few hundred kernels of a few microseconds each, and the Python that launches
them costs as much as the GPU time. Captured once and replayed, the step costs one launch
from the host. What a graph needs, and how this class provides it:

- **Static shapes and addresses.** Each batch is copied into a fixed input buffer; the
  loader drops the last partial batch (the trainer's loaders already do).
- **No host reads.** The objective's scalars come back as a device tensor (``terms``);
  the caller accumulates them on the device (the trainer already does).
- **Per-step scalars as device tensors.** The schedule multiplier ``m`` is written into a
  0-dim tensor before each replay; learning rates must be tensors (``capturable_adam``).
  ``objective.beta`` is a Python float that changes at most at an epoch end (the
  auto-balance), so the graph is recaptured when it differs from the captured value.
- **Warm-up outside the graph.** The first ``warmup`` steps run eagerly on a side stream
  (allocator, cuBLAS/cuDNN workspaces and the optimiser state are created there); they are
  ordinary training steps, so every batch is trained on exactly once.
- **Randomness.** The reparameterisation noise comes from the trainer's generator,
  registered with the graph so each replay draws fresh noise from its Philox stream.

Refused, each with a clear error: fp16 autocast (it needs a GradScaler, whose inf check
reads back to the host every step; use bfloat16 or float32), several processes (the
graph holds no gradient all-reduce), an optimiser whose learning rate is a Python float
(the graph would freeze it), and a batch of another shape than the captured one (the
loader must drop the last partial batch). An optimiser whose state or lr tensors are
replaced (``load_state_dict``) is noticed and the step recaptured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

__all__ = [
    "GraphedStep",
    "capturable_adam",
    "check_capturable",
]


def capturable_adam(params: Sequence[nn.Parameter] | Any, lr: float, **kwargs: Any) -> torch.optim.Adam:
    """Adam whose step can be captured: fused (one kernel for all parameters), with the
    learning rate held in a device tensor so that an LR scheduler changes it in place."""
    params = list(params)
    device = params[0].device
    return torch.optim.Adam(
        params, lr=torch.tensor(lr, device=device), fused=True, capturable=True, **kwargs
    )


def check_capturable(optimizers: Mapping[str, torch.optim.Optimizer],
                     autocast: Callable[[], AbstractContextManager[Any]] | None) -> None:
    """Raise ``ValueError`` for what a captured step cannot do right (see the module doc):
    fp16 autocast, several processes, an optimiser without a CUDA-tensor lr."""
    probe = (autocast or contextlib.nullcontext)()
    if isinstance(probe, torch.autocast) and probe.fast_dtype == torch.float16:
        raise ValueError("fp16 autocast needs a GradScaler, which reads back to the host "
                         "every step: use bfloat16 (or float32) with GraphedStep")
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        raise ValueError("GraphedStep does not average gradients across processes: "
                         "use it in single-process training")
    for name, opt in optimizers.items():
        for group in opt.param_groups:
            lr = group.get("lr")
            if not group.get("capturable", False) or not (
                    isinstance(lr, torch.Tensor) and lr.device.type == "cuda"):
                raise ValueError(
                    f"optimiser {name!r} must be capturable with its lr a CUDA tensor "
                    "(a float lr would be frozen into the graph): build it with capturable_adam()"
                )


class GraphedStep:
    """``step(x, multiplier) -> terms`` of one training step, captured as a CUDA graph.

    Args:
        model: the VAE (any ``encode``/``decode`` module the objective accepts), on CUDA.
        objective: an :class:`spherevae.training.objectives.Objective`.
        optimizers: optimiser name -> optimiser (from :func:`capturable_adam`).
        groups: optimiser name -> its parameters (``objective.parameter_groups``).
        term_names: the keys of ``StepOutput.terms`` to return, in order.
        generator: the CUDA generator of the reparameterisation noise.
        grad_clip: max global gradient norm per optimiser, or ``None``.
        autocast: a factory of the autocast context (float32 or bfloat16).
        warmup: eager steps before the capture (at least 1: the optimiser state must exist).

    ``__call__`` returns a ``(len(term_names),)`` float32 device tensor that the next call
    overwrites: accumulate or clone it before calling again.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        optimizers: Mapping[str, torch.optim.Optimizer],
        groups: Mapping[str, Sequence[nn.Parameter]],
        term_names: Sequence[str],
        generator: torch.Generator,
        *,
        grad_clip: float | None = None,
        autocast: Callable[[], AbstractContextManager[Any]] | None = None,
        warmup: int = 3,
    ) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, got {device}")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the optimiser state is created eagerly), got {warmup}")
        check_capturable(optimizers, autocast)
        self.model, self.objective = model, objective
        self.optimizers, self.groups = dict(optimizers), dict(groups)
        self.term_names = tuple(term_names)
        self.generator, self.grad_clip = generator, grad_clip
        self._autocast = autocast or contextlib.nullcontext
        self.warmup = warmup
        self.device = device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captures = 0  # how many times the step was (re)captured
        self._steps = 0
        self._beta: float | None = None
        self._captured_with: tuple[int, ...] = ()
        self._x: torch.Tensor | None = None
        self._m = torch.zeros((), device=device)
        self._terms = torch.zeros(len(self.term_names), device=device)
        self._stream = torch.cuda.Stream(device)

    def _step(self, x: torch.Tensor, multiplier: torch.Tensor | float) -> torch.Tensor:
        """The eager step, and what the graph records. Gradients are not zeroed here: set to
        ``None`` before a capture, each replay's backward writes them afresh."""
        with self._autocast():
            out = self.objective.compute(self.model, x, multiplier, self.generator)
        losses = list(out.losses.items())
        for i, (name, loss) in enumerate(losses):
            loss.backward(inputs=list(self.groups[name]), retain_graph=i < len(losses) - 1)
        for name, opt in self.optimizers.items():
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.groups[name], self.grad_clip, foreach=True)
            opt.step()
        return torch.stack([out.terms[k].detach().float() for k in self.term_names])

    def _zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def _eager(self, x: torch.Tensor, multiplier: float) -> torch.Tensor:
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            self._zero_grad()
            self._terms.copy_(self._step(x, multiplier))
            self._zero_grad()
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        return self._terms

    def _capture(self, x: torch.Tensor) -> None:
        self._x = torch.empty_like(x)
        self._x.copy_(x)
        self._zero_grad()
        graph = torch.cuda.CUDAGraph()
        if self.generator is not torch.cuda.default_generators[self.device.index or 0]:
            register = getattr(graph, "register_generator_state", None)
            if register is None:
                raise RuntimeError(
                    f"this torch ({torch.__version__}) cannot capture draws from a non-default "
                    "generator in a CUDA graph (CUDAGraph.register_generator_state is missing)"
                )
            register(self.generator)
        with torch.cuda.graph(graph, stream=self._stream):
            self._terms.copy_(self._step(self._x, self._m))
        self.graph = graph
        self._beta = self.objective.beta
        self._captured_with = self._tensors_in_use()
        self.captures += 1

    def _tensors_in_use(self) -> tuple[int, ...]:
        """Identities of what the graph reads by address and that can be replaced from
        outside: each optimiser's state dict and its lr tensors (``load_state_dict``
        replaces both). Cheap: a few ``id`` calls per step."""
        ids: list[int] = []
        for opt in self.optimizers.values():
            ids.append(id(opt.state))
            ids.extend(id(group["lr"]) for group in opt.param_groups)
        return tuple(ids)

    def __call__(self, x: torch.Tensor, multiplier: float) -> torch.Tensor:
        """Train on batch ``x`` with schedule multiplier ``multiplier``; returns the terms."""
        self._steps += 1
        if self._steps <= self.warmup:
            return self._eager(x, multiplier)
        if self._x is not None and (self._x.shape != x.shape or self._x.dtype != x.dtype):
            raise ValueError(
                f"GraphedStep was captured for batches of shape {tuple(self._x.shape)} "
                f"({self._x.dtype}), got {tuple(x.shape)} ({x.dtype}): drop the last partial batch"
            )
        self._m.fill_(multiplier)
        stale = self.objective.beta != self._beta or self._tensors_in_use() != self._captured_with
        if self._x is None or self.graph is None or stale:
            self._capture(x)
        else:
            self._x.copy_(x)
        assert self.graph is not None
        self.graph.replay()
        return self._terms
