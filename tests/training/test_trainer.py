"""The Trainer used directly: a user's model on a tensor, a Dataset or a DataLoader; host
reads only at log points; under two data-parallel processes the replicas stay equal."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

import spherevae
from _user_models import MLPVAE
from spherevae.io.weights import load_weights
from spherevae.training.config import RunConfig, config_from_dict, config_to_dict, load_config
from spherevae.training.runs import train
from spherevae.training.trainer import Trainer

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return torch.tensor(load_digits().data / 16.0, dtype=torch.float32)


def _model() -> MLPVAE:
    """The same initial weights every call (the user's init draws from the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MLPVAE()


def _cfg(tmp_path: Path, name: str, **train: object) -> RunConfig:
    base = config_to_dict(RunConfig())
    base["data"].update(name="in-memory", download=False)
    base["objective"].update(name="compressed", beta=0.01)
    base["schedule"] = {"name": "quench_anneal", "params": {}}
    base["train"].update({"epochs": 2, "batch_size": 64, "device": "cpu", "progress": False,
                          "out_dir": str(tmp_path), "run_name": name, **train})
    return config_from_dict(base)


@pytest.mark.parametrize("form", ["tensor", "dataset", "dataloader"])
def test_trainer_trains_a_user_model_on_any_data_form(tmp_path, digits, form):
    x_train, x_test = digits[:640], digits[640:800]
    wrap = {
        "tensor": lambda x: x,
        "dataset": lambda x: TensorDataset(x, torch.zeros(len(x), dtype=torch.long)),
        "dataloader": lambda x: DataLoader(TensorDataset(x), batch_size=100),
    }[form]
    run_dir = Trainer(_cfg(tmp_path, form), _model(), wrap(x_train), wrap(x_test)).fit()
    run = spherevae.load(run_dir, allow_classes=[MLPVAE])  # rebuilt from the allowed class
    assert [r["epoch"] for r in run.history] == [0, 1]
    assert run.history[-1]["test_mse_sum"] < run.history[0]["test_mse_sum"]
    assert run.model.radius == pytest.approx(8**0.5)  # compressed: the sphere by default
    assert run.reconstruct(x_test[:5]).shape == (5, 64)
    # The same data in any form trains the same weights (same order, same noise).
    if form != "tensor":
        ref = Trainer(_cfg(tmp_path, f"ref-{form}"), _model(), x_train, x_test).fit()
        a, b = load_weights(run_dir / "model.safetensors")[0], load_weights(ref / "model.safetensors")[0]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_user_model_resumed_with_more_epochs_ends_bit_identical(tmp_path, digits):
    x_train, x_test = digits[:640], digits[640:800]
    full = Trainer(_cfg(tmp_path, "full", epochs=4), _model(), x_train, x_test).fit()
    Trainer(_cfg(tmp_path, "part", epochs=2), _model(), x_train, x_test).fit()
    with pytest.warns(UserWarning, match=r"train\.epochs 2 -> 4"):
        part = Trainer(_cfg(tmp_path, "part", epochs=4), _model(), x_train, x_test).fit(resume=True)
    a, b = load_weights(full / "model.safetensors")[0], load_weights(part / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads(line) for line in (part / "history.jsonl").read_text().splitlines()]
    assert [(h["event"], h["start_epoch"]) for h in history] == [("start", 0), ("resume", 2)]


def test_trainer_without_model_or_data_says_what_it_needs(tmp_path, digits):
    with pytest.raises(ValueError, match="needs train= and test= data"):
        Trainer(_cfg(tmp_path, "a"), MLPVAE()).fit()
    with pytest.raises(ValueError, match="needs a model"):
        Trainer(_cfg(tmp_path, "b"), None, digits[:100], digits[100:200]).fit()


def test_the_host_reads_the_sums_only_at_log_points(tmp_path, monkeypatch):
    """digits-tiny: 1437 // 64 = 22 steps per epoch, log_every 10 -> reads after steps
    10, 20 and 22 of each epoch, never in between (train_step reads nothing back)."""
    reads: list[tuple[int, int]] = []
    original = Trainer._log_point

    def counting(self, epoch, step, multiplier, bar):
        reads.append((epoch, step))
        return original(self, epoch, step, multiplier, bar)

    monkeypatch.setattr(Trainer, "_log_point", counting)
    cfg = load_config(TINY, [f"train.out_dir={tmp_path}", "train.epochs=2", "train.log_every=10"])
    train(cfg)
    assert reads == [(e, s) for e in (0, 1) for s in (9, 19, 21)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist

    from spherevae.training.runs import _ConfigTrainer

    torch.set_num_threads(1)
    cfg = load_config(TINY, [f"train.out_dir={out_dir}", "train.epochs=2", "train.batch_size=32",
                                     "data.max_train=512"])
    try:
        trainer = _ConfigTrainer(cfg)
        trainer.fit()
        torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_data_parallel_processes_keep_equal_replicas_and_rank0_writes(tmp_path):
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # averaged gradients, same steps
    saved = load_weights(tmp_path / "digits-tiny" / "model.safetensors")[0]
    assert all(torch.equal(saved[k], r0[k]) for k in saved)
    rows = (tmp_path / "digits-tiny" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # one line per epoch: only rank 0 writes
    assert not (tmp_path / "digits-tiny" / ".lock").exists()


def test_epoch_sums_find_the_first_bad_step_of_each_term():
    from spherevae.training.records import EpochSums

    sums = EpochSums(torch.device("cpu"))
    values = {"loss": [1.0, 2.0, 3.0, float("inf"), 1.0, 2.0],
              "reconstruction": [1.0] * 6,
              "latent": [0.5, float("nan"), 0.5, -float("inf"), 0.5, 0.5]}
    for step in range(4):
        sums.add({k: torch.tensor(v[step]) for k, v in values.items()})
    assert sums.first_bad() == [3, -1, 1]  # inf, then -inf after NaN: still the first
    assert sums.means(4)[1] == 1.0
    sums.reset()
    for step in range(3):
        sums.add({k: torch.tensor(float(step)) for k in values})
    assert sums.first_bad() == [-1, -1, -1] and sums.means(3) == [1.0, 1.0, 1.0]


def _bn_model(mode: str) -> torch.nn.Module:
    from _user_models import BatchNormMLPVAE

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BatchNormMLPVAE()
    return model.eval() if mode == "eval" else model


def test_a_model_handed_over_in_eval_mode_trains_in_train_mode_and_resumes_bit_identical(tmp_path, digits):
    """spherevae.load returns models in eval mode; the trainer must switch back every
    epoch (batch norm), or a resumed run differs from an uninterrupted one."""
    x_train, x_test = digits[:640], digits[640:800]
    full = Trainer(_cfg(tmp_path, "full", epochs=3), _bn_model("train"), x_train, x_test).fit()
    Trainer(_cfg(tmp_path, "part", epochs=2), _bn_model("train"), x_train, x_test).fit()
    with pytest.warns(UserWarning, match=r"train\.epochs 2 -> 3"):
        part = Trainer(_cfg(tmp_path, "part", epochs=3), _bn_model("eval"), x_train, x_test).fit(resume=True)
    a, b = load_weights(full / "model.safetensors")[0], load_weights(part / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_forgets_the_samplers_and_latents_of_the_old_weights(tmp_path, digits):
    x_train, x_test = digits[:640], digits[640:800]
    run = spherevae.fit(_model(), train=x_train, test=x_test, objective="compressed", epochs=1,
                        batch_size=64, out_dir=tmp_path / "r", seed=0)
    old = run.sampler("vmf")
    assert (run.run_dir / "samplers" / "vmf.safetensors").is_file()
    with pytest.warns(UserWarning, match=r"train\.epochs 1 -> 3"):
        spherevae.fit(_model(), train=x_train, test=x_test, objective="compressed", epochs=3,
                      batch_size=64, out_dir=tmp_path / "r", seed=0, resume=True)
    assert not (run.run_dir / "samplers" / "vmf.safetensors").exists()
    new = spherevae.load(run.run_dir, model=_model()).sampler("vmf")
    assert not torch.equal(new.base.loc, old.base.loc)


def test_frozen_parameters_are_left_alone(tmp_path, digits):
    model = _model()
    for p in model.decoder[0].parameters():
        p.requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.decoder[0].state_dict().items()}
    Trainer(_cfg(tmp_path, "frozen", epochs=1), model, digits[:640], digits[640:800]).fit()
    assert all(torch.equal(frozen[k], v) for k, v in model.decoder[0].state_dict().items())


class _Recorder:
    """A callback without the base class: any object with some hooks is one."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple[str, int | str]] = []
        self.stop_after = stop_after

    def on_epoch_end(self, trainer, record):
        self.events.append(("epoch", record["epoch"]))
        if self.stop_after is not None and record["epoch"] + 1 >= self.stop_after:
            trainer.should_stop = True

    def on_checkpoint(self, trainer, epoch, path):
        assert path.is_file()  # called after the checkpoint is on disk
        self.events.append(("checkpoint", epoch))

    def on_fit_end(self, trainer, run_dir):
        assert (run_dir / "model.safetensors").is_file()
        self.events.append(("end", run_dir.name))


def test_callbacks_see_every_epoch_checkpoint_and_the_end_and_can_stop(tmp_path, digits):
    from spherevae.training import Callback

    rec = _Recorder()
    Trainer(_cfg(tmp_path, "cb", epochs=3, checkpoint_every=2), _model(), digits[:640], digits[640:800],
            callbacks=[rec]).fit()
    # checkpoint_every=2: after epoch 1 and after the last (2); the end after the weights.
    assert rec.events == [("epoch", 0), ("epoch", 1), ("checkpoint", 1), ("epoch", 2),
                          ("checkpoint", 2), ("end", "cb")]

    stopper = _Recorder(stop_after=2)
    trainer = Trainer(_cfg(tmp_path, "stop", epochs=5, checkpoint_every=10), _model(),
                      digits[:640], digits[640:800])
    trainer.add_callback(stopper)
    run_dir = trainer.fit()
    # Stopped after epoch 1 (of 5): that epoch is checkpointed, the weights are written.
    assert stopper.events == [("epoch", 0), ("epoch", 1), ("checkpoint", 1), ("end", "stop")]
    assert len(spherevae.load(run_dir, allow_classes=[MLPVAE]).history) == 2

    with pytest.raises(TypeError, match="a callback needs at least one of the methods"):
        Trainer(_cfg(tmp_path, "bad"), _model(), digits[:64], digits[64:128], callbacks=[object()])
    assert isinstance(Callback(), Callback)  # the no-op base is a valid callback too
    Trainer(_cfg(tmp_path, "base"), _model(), digits[:64], digits[64:128], callbacks=[Callback()])
