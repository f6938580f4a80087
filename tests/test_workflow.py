"""Workflow details: an image folder keeps its images' own size, sweep resources per run,
the CLI's choices, logging and summary tables."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from spherevae.cli import build_parser, configure_logging, main, train_summary
from spherevae.data import load_dataset
from spherevae.experiments.spec import expand_grid, load_sweep


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_keeps_the_files_size_without_image_size(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{c}/{i}.png": rng.integers(0, 256, (28, 28), dtype=np.uint8)
              for c in ("a", "b") for i in range(6)}
    for name, a in arrays.items():
        _write(tmp_path / name, a)
    train = load_dataset("folder", "train", root=tmp_path, test_fraction=0.3)
    test = load_dataset("folder", "test", root=tmp_path, test_fraction=0.3)
    assert train.images.shape[1:] == (1, 28, 28) and test.images.shape[1:] == (1, 28, 28)
    assert train.images.shape[0] + test.images.shape[0] == 12
    # Not resized: every image is one of the files, pixel for pixel.
    originals = {a.tobytes() for a in arrays.values()}
    for img in [*train.images, *test.images]:
        assert img[0].numpy().tobytes() in originals


def test_folder_non_square_is_centre_cropped_to_its_short_side(tmp_path):
    a = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)  # height 20, width 30
    for i in range(8):
        _write(tmp_path / f"{i}.png", a)
    ds = load_dataset("folder", "train", root=tmp_path, test_fraction=0.01)
    assert ds.images.shape[1:] == (1, 20, 20)
    assert np.array_equal(ds.images[0, 0].numpy(), a[:, 5:25])


def test_folder_of_mixed_sizes_asks_for_image_size(tmp_path):
    _write(tmp_path / "small.png", np.zeros((28, 28), np.uint8))
    _write(tmp_path / "big.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"2 sizes .*set data\.options\.image_size"):
        load_dataset("folder", "train", root=tmp_path)
    ds = load_dataset("folder", "train", root=tmp_path, image_size=16, test_fraction=0.01)
    assert ds.images.shape[1:] == (1, 16, 16)


def _sweep(tmp_path, extra):
    (tmp_path / "base.yaml").write_text("data: {name: digits}\n")
    p = tmp_path / "s.yaml"
    p.write_text(f"name: s\nbase: base.yaml\nout_dir: {tmp_path / 'out'}\n"
                 f"grid: {{train.seed: [0, 1]}}\n{extra}")
    return p


def test_sweep_resources_reach_every_run(tmp_path):
    specs = expand_grid(load_sweep(_sweep(tmp_path, "resources: {gpus: 0.5, cpus: 4}\n")))
    assert [s.resources for s in specs] == [{"cpus": 4, "gpus": 0.5}] * 2
    default = expand_grid(load_sweep(_sweep(tmp_path, "")))
    assert default[0].resources == {"cpus": 1.0, "gpus": 0.0}
    with pytest.raises(ValueError, match=r"resources\.tpus"):
        load_sweep(_sweep(tmp_path, "resources: {tpus: 1}\n"))
    with pytest.raises(ValueError, match=r"resources\.gpus' must be a number >= 0"):
        load_sweep(_sweep(tmp_path, "resources: {gpus: -1}\n"))


@pytest.mark.parametrize(("argv", "bad"), [
    (["evaluate", "run", "--samplers", "vmff"], "--samplers"),
    (["evaluate", "run", "--backbone", "incepton"], "--backbone"),
    (["sweep", "--config", "x", "--backend", "slurm"], "--backend"),
])
def test_choices_fail_before_any_work(argv, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"argument {bad}: invalid choice" in capsys.readouterr().err


def test_every_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"spherevae {name} {action.option_strings or action.dest} has no help"


def test_verbosity_flags_set_the_level():
    logger = logging.getLogger("spherevae")
    before = (logger.level, list(logger.handlers))
    try:
        configure_logging(-1)
        assert logger.level == logging.WARNING
        configure_logging(1)
        assert logger.level == logging.DEBUG
        configure_logging(0)
        ours = [h for h in logger.handlers if getattr(h, "_spherevae_cli", False)]
        assert logger.level == logging.INFO and len(ours) == 1  # not stacked
    finally:
        for h in logger.handlers[:]:
            if h not in before[1]:
                logger.removeHandler(h)
        logger.setLevel(before[0])
    # A command leaves the logger as it found it.
    assert main(["demo", "--latent-dim", "4", "--batch", "8", "-q"]) == 0
    assert (logger.level, logger.handlers) == before
    args = build_parser().parse_args(["-v", "demo"])
    assert args.verbose == 1
    assert build_parser().parse_args(["demo", "-q"]).quiet is True


def test_train_summary_and_epoch_lines_in_a_log_file(tmp_path, capsys):
    # Under pytest stderr is not a terminal: one line per epoch, no carriage returns.
    assert main(["train", "--config", "digits-tiny", f"train.out_dir={tmp_path}", "train.epochs=2",
                 "train.progress=true", "data.max_train=256"]) == 0
    out, err = capsys.readouterr()
    epochs = [ln for ln in err.splitlines() if ": epoch " in ln]
    assert [ln.split(": epoch ")[1].split(":")[0] for ln in epochs] == ["1/2", "2/2"]
    assert "\r" not in err
    last = json.loads((tmp_path / "digits-tiny" / "metrics.jsonl").read_text().splitlines()[-1])
    summary = out.splitlines()[:-1]
    assert summary == train_summary(last).splitlines()
    assert f"{last['test_rmse_percent']:.4g}" in "\n".join(summary)
    assert out.splitlines()[-1] == str(tmp_path / "digits-tiny")
