"""scripts/ship_featnet.py, run in-process on a scratch weights folder: it refuses what
would ship a wrong network (no training time, below the accuracy floor, a seed shipped
already, a file of another seed) and, replacing a seed with --force, drops the old
network's read-out standardisations so they are never paired with the new weights."""

import hashlib
import json
import runpy
import sys
from pathlib import Path

import pytest

from spherevae.evaluation import featnet

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_featnet.py"


def _ship(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["ship_featnet.py", *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_ship_featnet_guards_and_records(tmp_path, monkeypatch, fmnist_test):
    monkeypatch.setattr(featnet, "WEIGHTS_DIR", tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": {}, "recipe": featnet.RECIPE, "standardisations": {}}))
    untrained = tmp_path / "trained.safetensors"  # an untrained network: ~10% accuracy
    featnet.save_featnet(featnet.build_featnet(featnet.RECIPE, 1, 10), untrained, featnet.RECIPE,
                         extra={"dataset": "fashion-mnist", "seed": "7"})
    with pytest.raises(SystemExit, match="--weights needs --train-seconds"):
        _ship(monkeypatch, "--seed", "7", "--weights", str(untrained))
    with pytest.raises(SystemExit, match="not seed 8 of the current recipe"):
        _ship(monkeypatch, "--seed", "8", "--weights", str(untrained), "--train-seconds", "1")
    with pytest.raises(SystemExit, match=r"below the shipped networks' floor 0\.92"):
        _ship(monkeypatch, "--seed", "7", "--weights", str(untrained), "--train-seconds", "1")
    _ship(monkeypatch, "--seed", "7", "--weights", str(untrained), "--train-seconds", "1", "--force")
    name = "domain-v2-fashion-mnist-seed7.safetensors"
    entry = json.loads(manifest.read_text())["files"][name]
    assert entry["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    assert entry["seed"] == 7 and entry["train_seconds_1thread"] == 1 and entry["test_accuracy"] < 0.5
    with pytest.raises(SystemExit, match="shipped already"):
        _ship(monkeypatch, "--seed", "7", "--weights", str(untrained), "--train-seconds", "1")
    # A standardisation of the old seed-7 network goes when the network is replaced.
    m = json.loads(manifest.read_text())
    m["standardisations"]["domain-v3-fashion-mnist-seed7.safetensors"] = {"weights": name, "readout": "domain-v3"}
    manifest.write_text(json.dumps(m))
    (tmp_path / "domain-v3-fashion-mnist-seed7.safetensors").write_bytes(b"old statistics")
    _ship(monkeypatch, "--seed", "7", "--weights", str(untrained), "--train-seconds", "2", "--force")
    m = json.loads(manifest.read_text())
    assert m["standardisations"] == {} and not (tmp_path / "domain-v3-fashion-mnist-seed7.safetensors").exists()
    assert m["files"][name]["train_seconds_1thread"] == 2
