"""Inception-v3 FID features: architecture, strict loading, clear errors. No real weights
exist offline, so the network is checked with random weights saved and loaded back."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from spherevae.evaluation.domain import DomainClassifier
from spherevae.evaluation.features import (
    BackboneUnavailableError,
    backbone_extractor,
    check_backbone,
)
from spherevae.evaluation.fid import FID
from spherevae.evaluation.inception import (
    FID_WEIGHTS_URL,
    InceptionV3Features,
    InceptionWeightsNotFoundError,
    WrongWeightsError,
    load_inception_weights,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, InceptionV3Features]:
    torch.manual_seed(0)
    model = InceptionV3Features()
    with torch.no_grad():  # non-trivial BN statistics so a wrong load would show
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    state = dict(model.state_dict())
    # The public file also holds the 1008-way classifier; it must be accepted and ignored.
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path_factory.mktemp("w") / "inception.pth"
    torch.save(state, path)
    return path, model


def _conv_params(cin: int, cout: int, kh: int, kw: int) -> int:
    return cin * cout * kh * kw + 2 * cout  # conv weight + BN weight and bias


def test_architecture_matches_the_fid_network_layout() -> None:
    sd = InceptionV3Features().state_dict()
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert sd["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["Mixed_7b.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    # Independent tally of the stem and one block from the published layer table.
    stem = sum(_conv_params(*c) for c in [(3, 32, 3, 3), (32, 32, 3, 3), (32, 64, 3, 3), (64, 80, 1, 1), (80, 192, 3, 3)])
    model = InceptionV3Features()
    counted = sum(p.numel() for n, p in model.named_parameters() if n.startswith("Conv2d_"))
    assert counted == stem
    mixed_5b = sum(_conv_params(*c) for c in [(192, 64, 1, 1), (192, 48, 1, 1), (48, 64, 5, 5), (192, 64, 1, 1),
                                                (64, 96, 3, 3), (96, 96, 3, 3), (192, 32, 1, 1)])
    assert sum(p.numel() for p in model.Mixed_5b.parameters()) == mixed_5b
    # Known size of Inception-v3 without its classifier and auxiliary head: 21.8 M.
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(21.79e6, rel=2e-3)


def test_features_shape_determinism_and_exact_reload(weights_file) -> None:
    path, original = weights_file
    fid = FID.from_backbone("inception", weights=str(path))
    assert fid.backbone_name == "inception"
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    feats = fid.features(x)
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    np.testing.assert_array_equal(feats, fid.features(x))
    with torch.no_grad():
        np.testing.assert_allclose(feats, original.eval().features(x).double().numpy(), rtol=1e-6, atol=1e-7)
    grey = fid.features(torch.rand(2, 1, 28, 28))  # Fashion-MNIST sized, greyscale
    assert grey.shape == (2, 2048)


def test_missing_weights_explain_how_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPHEREVAE_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(InceptionWeightsNotFoundError) as info:
        FID.from_backbone("inception")
    assert FID_WEIGHTS_URL in str(info.value) and "--inception-weights" in str(info.value)
    with pytest.raises(InceptionWeightsNotFoundError, match="does not exist"):
        load_inception_weights(tmp_path / "nope.pth")


def test_check_backbone_says_before_any_work_what_building_it_would(monkeypatch, tmp_path, weights_file) -> None:
    """The cheap check raises what the build would: no labels -> BackboneUnavailableError
    (evaluation goes on without FID), a missing weights file -> InceptionWeightsNotFoundError."""
    from types import SimpleNamespace

    monkeypatch.delenv("SPHEREVAE_INCEPTION_WEIGHTS", raising=False)
    flat = SimpleNamespace(name="folder", images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8), labels=None)
    for call in (check_backbone, backbone_extractor):
        with pytest.raises(BackboneUnavailableError, match="class subfolders"):
            call("domain", dataset=flat)
        with pytest.raises(InceptionWeightsNotFoundError, match="does not exist"):
            call("inception", weights=str(tmp_path / "nope.pth"))
    check_backbone("inception", weights=str(weights_file[0]))  # a right file: no error
    # A wrong file or a directory is found by the check too, not at the FID stage.
    wrong = tmp_path / "domain.pt"
    torch.save(DomainClassifier(1, 10).state_dict(), wrong)
    with pytest.raises(WrongWeightsError, match="not an Inception-v3 FID network"):
        check_backbone("inception", weights=str(wrong))
    with pytest.raises(InceptionWeightsNotFoundError, match="is a directory, not a file"):
        check_backbone("inception", weights=str(tmp_path))


def test_env_var_fallback(weights_file, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPHEREVAE_INCEPTION_WEIGHTS", str(weights_file[0]))
    assert isinstance(load_inception_weights(), InceptionV3Features)


def test_wrong_network_is_refused(tmp_path: Path, weights_file) -> None:
    other = tmp_path / "domain.pt"
    torch.save(DomainClassifier(1, 10).state_dict(), other)
    with pytest.raises(WrongWeightsError, match=r"not an Inception-v3 FID network: \d+ missing keys"):
        load_inception_weights(other)
    state = torch.load(weights_file[0], weights_only=True)
    state["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(192, 2048, 3, 3)
    reshaped = tmp_path / "reshaped.pt"
    torch.save(state, reshaped)
    with pytest.raises(WrongWeightsError, match="1 with wrong shapes"):
        load_inception_weights(reshaped)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights_file[0].read_bytes()[:1000])
    with pytest.raises(WrongWeightsError, match="not a loadable tensor file"):
        load_inception_weights(truncated)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(WrongWeightsError, match="expected a state dict"):
        load_inception_weights(listed)


# torch warns that the file uses pickle protocol 4: expected, the file is hostile on purpose.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_file_with_code_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(WrongWeightsError):
        load_inception_weights(path)
    assert not marker.exists()


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"one of \['domain', 'domain-v1', 'domain-v2', 'domain-x2', 'domain-x3', 'inception'\]"):
        FID.from_backbone("clip")


def test_cli_evaluate_with_wrong_weights_is_one_clear_error(tmp_path: Path, capsys) -> None:
    from spherevae.cli import main

    config = Path(__file__).resolve().parents[2] / "configs" / "digits-tiny.yaml"
    assert main(["train", "--config", str(config), f"train.out_dir={tmp_path}", "train.epochs=1"]) == 0
    run = tmp_path / "digits-tiny"
    wrong = tmp_path / "domain.pt"
    torch.save(DomainClassifier(1, 10).state_dict(), wrong)
    code = main(["evaluate", str(run), "--backbone", "inception", "--inception-weights", str(wrong),
                 "--num-samples", "50", "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and "not an Inception-v3 FID network" in err and "Traceback" not in err
