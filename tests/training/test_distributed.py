"""Data parallelism: the latent loss sees the global batch, gradients match one process.

Two CPU processes (gloo) each hold half of a batch. Every rank gathers (mu, sigma)
with gradients and computes a batch-statistics loss on the global batch; the results
must equal one process computing on the concatenated batch.
"""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spherevae.training.distributed import (
    DistInfo,
    all_gather_with_grad,
    average_gradients,
    init_distributed,
)

WORLD = 2
BATCH = 6  # per rank
N = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch_stats_loss(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    # Nonlinear in the batch mean and std, like the hyperspherical prior loss: wrong
    # if any rank saw only its shard.
    s_mu = mu.std(0, unbiased=True)
    return (
        (mu.mean(0) - 0.3).square().sum()
        + (s_mu - 0.5).square().sum()
        + (sigma.mean(0) - 1).pow(4).sum()
    )


def _latent_loss(mu, sigma):
    try:
        from spherevae.losses.prior import HypersphericalPriorLoss
    except ImportError:  # the losses module is developed in parallel
        return _batch_stats_loss(mu, sigma)
    return HypersphericalPriorLoss(N)(mu, sigma) + _batch_stats_loss(mu, sigma)


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2 * N).double()
    x = torch.randn(WORLD * BATCH, 3, dtype=torch.float64)
    return model, x


def _forward(model, x, gather):
    out = model(x)
    mu, logvar = out[:, :N], out[:, N:]
    mu.retain_grad()
    sigma = torch.exp(0.5 * logvar)
    sigma.retain_grad()
    recon = out.square().sum(1).mean()  # a per-sample term: stays local
    loss = recon + _latent_loss(gather(mu), gather(sigma))
    return loss, mu, sigma


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        model, x = _setup()
        shard = x[rank * BATCH : (rank + 1) * BATCH]
        loss, mu, sigma = _forward(model, shard, all_gather_with_grad)
        loss.backward()
        average_gradients(model.parameters())
        torch.save(
            {
                "loss": loss.detach(),
                "mu_grad": mu.grad,
                "sigma_grad": sigma.grad,
                "params": {k: p.grad for k, p in model.named_parameters()},
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_loss_and_gradients_equal_one_process_on_the_concatenated_batch(ranks):
    model, x = _setup()
    # The reference: one process, the whole batch, no gathering. With equal shards the
    # mean of the ranks' local reconstruction means is the global mean, so the average
    # of the ranks' losses is exactly this loss.
    loss_ref, mu_ref, sigma_ref = _forward(model, x, lambda t: t)
    loss_ref.backward()
    latent_ref = _latent_loss(mu_ref.detach(), sigma_ref.detach())
    for r, got in enumerate(ranks):
        local_recon = model(x[r * BATCH : (r + 1) * BATCH]).square().sum(1).mean()
        torch.testing.assert_close(got["loss"], (local_recon + latent_ref).detach())
        # Each rank's loss contains the latent term once, so a shard's gradient is
        # summed over ranks; DDP's averaging divides by the world size.
        sl = slice(r * BATCH, (r + 1) * BATCH)
        for name, ref in (("mu_grad", mu_ref.grad), ("sigma_grad", sigma_ref.grad)):
            torch.testing.assert_close(got[name] / WORLD, ref[sl])
        for k, p in model.named_parameters():
            torch.testing.assert_close(got["params"][k], p.grad)


def test_gather_without_a_process_group_is_the_identity():
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    average_gradients([torch.nn.Parameter(torch.ones(2))])  # no-op, no error


def test_init_without_torchrun_env_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0) and info.is_main
