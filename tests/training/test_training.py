"""The trainer on the bundled digits with a tiny model: resume, divergence, objectives."""

import json
import math
from pathlib import Path

import pytest
import torch

from spherevae.io.checkpoint import load_checkpoint
from spherevae.io.weights import load_weights
from spherevae.training.config import load_config
from spherevae.training.objectives import OBJECTIVES, AuthorsObjective
from spherevae.training.runs import build_model, load_run, train
from spherevae.training.trainer import TrainingDiverged

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


def cfg_for(tmp_path, *overrides):
    return load_config(TINY, [f"train.out_dir={tmp_path}", *overrides])


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_weights(run_dir / "model.safetensors")[0]


@pytest.mark.parametrize("objective", ["compressed", "authors"])
def test_resume_gives_bit_identical_weights(tmp_path, objective):
    common = [
        f"objective.name={objective}",
        "train.epochs=4",
        "objective.dataset_weight=10.0"
    ]
    full = train(cfg_for(tmp_path, *common, "train.run_name=full"))
    part = cfg_for(tmp_path, *common, "train.run_name=part", "train.epochs=2")
    train(part)
    # Extending epochs pins the quench to the old total (docs/design.md, Robustness): here
    # round(2/3) = round(4/3) = 1 epoch, so the resumed run must match the full one exactly.
    with pytest.warns(UserWarning, match=r"train\.epochs 2 -> 4"):
        resumed = train(cfg_for(tmp_path, *common, "train.run_name=part"), resume=True)
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = metrics(full), metrics(resumed)
    assert [m["epoch"] for m in mb] == [0, 1, 2, 3]
    for x, y in zip(ma, mb, strict=True):
        x.pop("epoch_time_s"), y.pop("epoch_time_s")
        assert x == y


def test_metrics_are_consistent_and_training_reduces_the_error(tmp_path):
    run = train(cfg_for(tmp_path, "objective.name=standard", "train.epochs=4"))
    rows = metrics(run)
    assert len(rows) == 4
    for r in rows:
        # RMSE in % of the range is 100 sqrt(mean squared error per pixel); 8x8 digits.
        assert r["train_rmse_percent"] == pytest.approx(100 * math.sqrt(r["train_mse_sum"] / 64))
        assert r["test_rmse_percent"] == pytest.approx(100 * math.sqrt(r["test_mse_sum"] / 64))
        assert set(r) >= {"train_latent", "beta", "multiplier", "lr", "epoch_time_s"}
    assert rows[-1]["test_mse_sum"] < 0.8 * rows[0]["test_mse_sum"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_load_run_gives_the_config_and_final_weights(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=1")
    run = train(cfg)
    cfg2, model = load_run(run)
    assert cfg2 == cfg
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights(run)[k])
    x = torch.rand(3, 1, 8, 8)
    mu, _ = model.encode(x)
    assert mu.shape == (3, 8)


def test_a_diverging_run_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr x 1e8 after every epoch: epoch 0 is fine, then the weights blow up.
    cfg = cfg_for(
        tmp_path,
        "objective.name=standard",
        "optim.lr_decay=1e8",
        "train.epochs=6",
        "train.log_every=1",
    )
    with pytest.raises(
        TrainingDiverged,
        match=r"diverged at epoch [1-5], step \d+ of \d+: the .* term became NaN or inf",
    ) as info:
        train(cfg)
    assert "last good checkpoint" in str(info.value)
    ckpt = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    epoch = int(str(info.value).split("at epoch ")[1].split(",")[0])
    assert ckpt["epoch"] == epoch - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (cfg.run_dir / "model.safetensors").exists()
    assert len(metrics(cfg.run_dir)) == epoch  # no line for the diverged epoch


def test_authors_two_step_gradients_equal_the_two_separate_updates(tmp_path):
    """One forward + backward(inputs=...) per optimiser == encoder step on the scaled
    loss (decoder frozen) and decoder step on MSE(decoder(z.detach())) (encoder frozen)."""
    cfg = cfg_for(tmp_path, "objective.name=authors", "objective.dataset_weight=10.0")
    model = build_model(cfg, (1, 8, 8)).double()
    obj = AuthorsObjective.from_config(cfg, model.latent_dim).double()
    groups = obj.parameter_groups(model)
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    out = obj.compute(model, x, 3.0, torch.Generator().manual_seed(0))
    out.losses["encoder"].backward(inputs=groups["encoder"], retain_graph=True)
    out.losses["decoder"].backward(inputs=groups["decoder"])
    got = {id(p): p.grad.clone() for g in groups.values() for p in g}

    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    recon = (model.decode(z) - x).square().flatten(1).sum(1).mean()
    latent = obj._latent(mu, logvar)
    enc = torch.autograd.grad(1e-3 * (recon + obj.beta * latent * 3.0), groups["encoder"])
    dec_recon = (model.decode(z.detach()) - x).square().flatten(1).sum(1).mean()
    dec = torch.autograd.grad(dec_recon, groups["decoder"])
    for p, g in zip(groups["encoder"] + groups["decoder"], enc + dec, strict=True):
        torch.testing.assert_close(got[id(p)], g)
    assert {id(p) for p in groups["encoder"]}.isdisjoint(id(p) for p in groups["decoder"])
    assert len(groups["encoder"]) + len(groups["decoder"]) == len(list(model.parameters()))


@pytest.mark.parametrize(
    ("objective", "balance"),
    [("authors", None), ("compressed", "true"), ("standard", "true"), ("compressed", None)],
)
def test_beta_auto_balance_after_epoch_0_then_held(tmp_path, objective, balance):
    """On by default for authors only; every objective honours objective.auto_balance=true
    (it used to be silently ignored by compressed)."""
    extra = [] if balance is None else [f"objective.auto_balance={balance}"]
    run = train(
        cfg_for(
            tmp_path,
            f"objective.name={objective}",
            "objective.beta=0.5",
            "objective.dataset_weight=10.0",
            "train.epochs=3",
            *extra,
        )
    )
    rows = metrics(run)
    if objective == "compressed" and balance is None:
        assert [r["beta"] for r in rows] == [0.5, 0.5, 0.5]
        return
    assert rows[0]["beta"] == 0.5
    expected = 0.5 * rows[0]["train_mse_sum"] / (rows[0]["train_latent"] + 1e-3)
    assert rows[1]["beta"] == pytest.approx(expected, rel=1e-5)
    assert rows[1]["beta"] != 0.5
    assert rows[2]["beta"] == rows[1]["beta"]
    groups = {"encoder", "decoder"} if objective == "authors" else {"model"}
    assert set(rows[0]["lr"]) == groups


def test_authors_half_compression_warns_when_the_quench_anneals(tmp_path):
    cfg = cfg_for(
        tmp_path,
        "objective.name=authors",
        "objective.dataset_weight=10.0",
        "objective.loss_overrides.compression=half",
        "schedule.name=quench_anneal",
    )
    model = build_model(cfg, (1, 8, 8))
    with pytest.warns(UserWarning, match=r"schedule\.params\.anneal=false"):
        AuthorsObjective.from_config(cfg, model.latent_dim)


def test_objective_registry_and_sphere_defaults(tmp_path):
    assert set(OBJECTIVES) == {"standard", "compressed", "authors"}
    assert build_model(
        cfg_for(tmp_path, "objective.name=compressed"), (1, 8, 8)
    ).radius == pytest.approx(math.sqrt(8))
    assert build_model(cfg_for(tmp_path, "objective.name=standard"), (1, 8, 8)).radius is None
    on = cfg_for(tmp_path, "objective.name=standard", "model.project_to_sphere=true")
    assert build_model(on, (1, 8, 8)).radius == pytest.approx(math.sqrt(8))


def test_same_seed_same_weights_and_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model(cfg_for(tmp_path), (1, 8, 8))
    b = build_model(cfg_for(tmp_path), (1, 8, 8))
    c = build_model(cfg_for(tmp_path, "train.seed=1"), (1, 8, 8))
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=1")
    train(cfg)
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        train(cfg)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(cfg_for(tmp_path, "train.run_name=other"), resume=True)


def test_bad_names_in_the_config_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"model\.preset must be one of"):
        build_model(cfg_for(tmp_path, "model.preset=huge"), (1, 8, 8))
    with pytest.raises(ValueError, match=r"model\.extra\.depth is not a ModelConfig field"):
        build_model(cfg_for(tmp_path, "model.extra.depth=3"), (1, 8, 8))


def test_tensorboard_logs_the_epoch_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(cfg_for(tmp_path, "train.epochs=2", "train.tensorboard=true"))
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "test_rmse_percent", "beta"} <= tags
    logged = [e.value for e in acc.Scalars("test_rmse_percent")]
    assert logged == pytest.approx([m["test_rmse_percent"] for m in metrics(run)], rel=1e-6)


def test_without_a_terminal_a_progress_line_comes_within_the_interval(tmp_path, monkeypatch, caplog):
    """Output to a file: besides a line per epoch, a step line once progress_every_s has
    passed (0 here: at every log_every host read), so a long epoch never leaves the log silent."""
    import logging

    from spherevae.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "progress_every_s", 0.0)
    with caplog.at_level(logging.INFO, logger="spherevae.train"):
        train(cfg_for(tmp_path, "train.epochs=1", "train.progress=true", "train.log_every=5"))
    steps = [r.getMessage() for r in caplog.records if ", step " in r.getMessage()]
    n = metrics(tmp_path / "digits-tiny")[0]
    assert steps and all(m.startswith("digits-tiny: epoch 1/1, step ") for m in steps)
    done = [tuple(map(int, m.split(", step ")[1].split(",")[0].split("/"))) for m in steps]
    assert [c for c, _ in done] == sorted(c for c, _ in done)
    assert all(c % 5 == 0 or c == total for c, total in done)  # at the host reads only
    assert "train_loss" in n
    monkeypatch.setattr(Trainer, "progress_every_s", 3600.0)  # a short run: the epoch lines only
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spherevae.train"):
        train(cfg_for(tmp_path / "b", "train.epochs=1", "train.progress=true", "train.log_every=5"))
    assert not [r for r in caplog.records if ", step " in r.getMessage()]
