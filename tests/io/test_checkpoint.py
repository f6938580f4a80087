"""Checkpoints: atomic writes, weights-only loading."""

import os
import pickle

import pytest
import torch

from spherevae.io.checkpoint import load_checkpoint, save_checkpoint
from spherevae.io.errors import CheckpointError


def test_round_trip_of_state_dicts_and_rng_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    g = torch.Generator().manual_seed(5)
    obj = {
        "epoch": 3,
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "rng": g.get_state(),
        "cfg": {"a": [1, 2]},
    }
    path = save_checkpoint(obj, tmp_path / "sub" / "last.pt")
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["cfg"] == {"a": [1, 2]}
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v)
    g2 = torch.Generator()
    g2.set_state(back["rng"])
    assert torch.equal(torch.rand(5, generator=g2), torch.rand(5, generator=g))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_objects_that_need_unpickling_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"module": torch.nn.Linear(2, 2)}, path)  # a pickled class, not a state dict
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(torch.nn.modules.linear.Linear\)") as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value)  # never suggest switching the safety off


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    with pytest.raises(
        (AttributeError, TypeError, pickle.PicklingError)
    ):  # a lambda cannot be pickled
        save_checkpoint({"epoch": 2, "bad": lambda: 0}, path)
    assert load_checkpoint(path) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["last.pt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
