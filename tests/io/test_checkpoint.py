"""Checkpoints: atomic writes, weights-only loading."""

import collections
import os
import pickle
import signal

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


class _SignalsWhilePickled:
    """Sends ``signum`` to this process while torch.save pickles it: a signal mid-write."""

    def __init__(self, signum):
        self.signum = signum

    def __reduce__(self):
        os.kill(os.getpid(), self.signum)
        return (collections.OrderedDict, ())  # loads as {} with weights_only


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_checkpoint_write_is_handled_once_the_file_is_in_place(tmp_path, signum):
    """Handled mid-write, the exception a handler raises (KeyboardInterrupt, a sweep's stop)
    unwinds through torch's zip writer, which can abort the process; so the handler runs
    after the write, exactly once, and the handlers are restored."""
    path, seen = tmp_path / "last.pt", []

    def handler(sig, _frame):
        seen.append((sig, path.is_file()))
        raise KeyboardInterrupt

    old = signal.signal(signum, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint({"epoch": 1, "w": torch.ones(3), "x": _SignalsWhilePickled(signum)}, path)
        assert seen == [(signum, True)]
        assert signal.getsignal(signum) is handler
        back = load_checkpoint(path)  # complete
        assert back["epoch"] == 1 and torch.equal(back["w"], torch.ones(3)) and back["x"] == {}
    finally:
        signal.signal(signum, old)
