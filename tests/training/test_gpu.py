"""CUDA paths (skipped without a GPU; CI has none). Run on a GPU machine with
``python -m pytest tests/test_gpu.py``; docs/benchmarks.md records where it ran."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_coordinates_match_cpu_values_and_gradients() -> None:
    from spherevae.geometry.coordinates import hyperspherical_cosines, to_hyperspherical

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1000, generator=g, dtype=torch.float64)
    x[0, 500:] = 0.0
    w = torch.randn(64, 999, generator=g, dtype=torch.float64)
    out = {}
    for device in ("cpu", "cuda"):
        xd = x.detach().to(device).clone().requires_grad_()
        r, cos = hyperspherical_cosines(xd)
        ((cos * w.to(device)).sum() + r.sum()).backward()
        out[device] = (r.detach().cpu(), cos.detach().cpu(), xd.grad.cpu(), to_hyperspherical(xd.detach())[1].cpu())
    for a, b in zip(out["cpu"], out["cuda"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    _, c16 = hyperspherical_cosines(x.float().cuda().bfloat16())
    assert c16.dtype == torch.bfloat16 and (c16.float().cpu() - out["cpu"][1].float()).abs().max() < 2e-2


def test_compressed_step_has_no_host_device_sync() -> None:
    """Forward, compressed loss, backward and Adam step of a VAE under CUDA's sync checker."""
    from spherevae.training.config import load_config
    from spherevae.training.objectives import build_objective
    from spherevae.training.runs import build_model

    cfg = load_config(CONFIGS / "cifar10-compressed.yaml", ["model.latent_dim=64"])
    model = build_model(cfg, (3, 32, 32)).cuda()
    objective = build_objective(cfg, model.latent_dim).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    x = torch.rand(32, 3, 32, 32, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(2):  # warm-up: lazy initialisation may sync once
        step = objective.compute(model, x, 1.0, gen)
        opt.zero_grad(set_to_none=True)
        step.losses["model"].backward()
        opt.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            step = objective.compute(model, x, 2.0, gen)
        opt.zero_grad(set_to_none=True)
        step.losses["model"].backward()
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(step.losses["model"]).item()


@pytest.mark.parametrize("objective", ["compressed", "authors"])
def test_trainer_step_has_no_host_device_sync(tmp_path: Path, objective: str) -> None:
    """Trainer.train_step as the loop runs it (forward, loss, backward, gradient clipping,
    Adam, the on-device sums of the reported terms) under CUDA's sync checker."""
    from spherevae.training.config import load_config
    from spherevae.training.runs import _ConfigTrainer

    cfg = load_config(CONFIGS / "digits-tiny.yaml", [
        "train.device=cuda", f"train.out_dir={tmp_path}", "optim.grad_clip=1.0", "train.amp=bf16",
        f"objective.name={objective}", "objective.dataset_weight=10.0"])
    trainer = _ConfigTrainer(cfg)
    trainer.setup()  # no run directory needed for the step itself
    x = next(iter(trainer.loader))[0]
    m = torch.full((), 2.0, device="cuda")
    for _ in range(2):  # warm-up: lazy initialisation may sync once
        trainer.train_step(x, m)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step(x, m)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.sums.finite_steps.tolist() == [5, 5, 5] and trainer.sums.first_bad() == [-1, -1, -1]


def test_vmf_fit_and_sample_on_gpu() -> None:
    from spherevae.distributions.vmf import VonMisesFisher

    g = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(10_000, 1000, device="cuda", generator=g) + 3.0
    vmf = VonMisesFisher.fit(z)
    samples = vmf.sample((10_000,), generator=g)
    assert samples.device.type == "cuda" and torch.isfinite(samples).all()
    torch.testing.assert_close(samples.norm(dim=-1), torch.ones(10_000, device="cuda"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra", [["train.amp=bf16"], ["train.amp=bf16", "train.compile=true"]])
def test_trainer_on_gpu(tmp_path: Path, extra: list[str]) -> None:
    import json

    from spherevae.training.config import load_config
    from spherevae.training.runs import train

    cfg = load_config(CONFIGS / "digits-tiny.yaml", ["train.device=cuda", "train.epochs=2",
                                                     f"train.out_dir={tmp_path}", *extra])
    run = train(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)


def test_fit_on_cuda_then_load_on_cpu(tmp_path) -> None:
    """The Python API trains a user model on the GPU; the run loads and samples on the CPU."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import spherevae
    from _user_models import MLPVAE

    x = torch.rand(600, 64, generator=torch.Generator().manual_seed(0))
    run = spherevae.fit(MLPVAE(), train=x[:500], test=x[500:], objective="compressed", epochs=2,
                        batch_size=50, out_dir=tmp_path / "gpu", seed=0, device="cuda")
    cpu = spherevae.load(run.run_dir, allow_classes=[MLPVAE])
    torch.testing.assert_close(cpu.reconstruct(x[:8]), run.reconstruct(x[:8]), rtol=1e-4, atol=1e-5)
    assert cpu.sample(4, "esag").shape == (4, 64)


def _graph_setup(objective: str = "compressed", n: int = 64, seed: int = 0):
    from spherevae.training.config import load_config
    from spherevae.training.cudagraph import GraphedStep, capturable_adam
    from spherevae.training.objectives import TERMS, build_objective
    from spherevae.training.runs import build_model

    cfg = load_config(CONFIGS / f"cifar10-{objective}.yaml", [f"model.latent_dim={n}"])
    torch.manual_seed(seed)
    model = build_model(cfg, (3, 32, 32)).cuda()
    obj = build_objective(cfg, model.latent_dim).cuda()
    groups = obj.parameter_groups(model)
    opts = {k: capturable_adam(p, 1e-3) for k, p in groups.items()}
    noise = torch.Generator("cuda").manual_seed(seed + 1)
    return model, obj, opts, groups, TERMS, noise, GraphedStep


@pytest.mark.parametrize("n", [2, 200, 1000])
def test_triton_prior_loss_matches_torch_on_cuda(n: int) -> None:
    from spherevae.losses.prior import HypersphericalPriorLoss

    g = torch.Generator("cuda").manual_seed(n)
    mu = torch.randn(200, n, device="cuda", generator=g) + 0.2
    sigma = torch.rand(200, n, device="cuda", generator=g) + 0.05
    out = {}
    for backend in ("torch", "triton"):
        m, s = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
        loss = HypersphericalPriorLoss(n, backend=backend).cuda()(m, s, validate=False)
        loss.backward()
        out[backend] = (loss.detach(), m.grad, s.grad)
    for a, b in zip(out["torch"], out["triton"], strict=True):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=1e-6)
    assert HypersphericalPriorLoss(n)._use_triton(mu[None])  # 'auto' picks Triton on CUDA


@pytest.fixture
def deterministic_cudnn():
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize("objective", ["standard", "compressed"])
def test_graphed_step_matches_eager_steps(objective: str, deterministic_cudnn: None) -> None:
    """The same 6 steps eagerly and as graph replays (2 eager warm-ups, capture, replays):
    same losses and same final weights, so the graph trains exactly what the loop would."""
    runs = {}
    for warmup in (6, 2):  # warmup=6: never captured, i.e. the eager reference
        model, obj, opts, groups, terms, noise, graphed_step = _graph_setup(objective)
        step = graphed_step(model, obj, opts, groups, terms, noise, grad_clip=100.0, warmup=warmup)
        g = torch.Generator("cuda").manual_seed(5)
        xs = [torch.rand(32, 3, 32, 32, device="cuda", generator=g) for _ in range(6)]
        losses = torch.stack([step(x, 1.0 + 0.5 * i).clone() for i, x in enumerate(xs)])
        runs[warmup] = (losses, torch.cat([p.detach().flatten() for p in model.parameters()]), step.captures)
    assert runs[6][2] == 0 and runs[2][2] == 1
    torch.testing.assert_close(runs[2][0], runs[6][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(runs[2][1], runs[6][1], rtol=1e-4, atol=1e-5)


def test_graphed_step_has_no_host_sync_and_recaptures_on_beta_change() -> None:
    model, obj, opts, groups, terms, noise, graphed_step = _graph_setup("compressed")
    step = graphed_step(model, obj, opts, groups, terms, noise, grad_clip=100.0, warmup=1)
    x = torch.rand(32, 3, 32, 32, device="cuda")
    step(x, 1.0)
    step(x, 1.0)  # the capture
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = step(x, 2.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert step.captures == 1 and torch.isfinite(out).all()
    obj.beta = 0.5  # the auto-balance changes beta at an epoch end
    step(x, 1.0)
    assert step.captures == 2
