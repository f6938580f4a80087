"""The ``spherevae train`` command: runs, resumes, and reports bad input in one line."""

import json
from pathlib import Path

import pytest

from spherevae.cli import COMMANDS, main

TINY = str(Path(__file__).parents[1] / "configs" / "digits-tiny.yaml")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_has_a_working_parser(name, capsys):
    """Each COMMANDS entry builds its parser and documents itself (exit 0 on --help)."""
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"usage: spherevae {name}" in capsys.readouterr().out


def test_train_then_resume_with_more_epochs(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--config",
                TINY,
                f"train.out_dir={tmp_path}",
                "train.epochs=1",
                "model.project_to_sphere=false",
            ]
        )
        == 0
    )
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir == tmp_path / "digits-tiny"
    assert main(["train", "--resume", str(run_dir), "train.epochs=2"]) == 0
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert "epochs: 2" in (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train"], "--config is required"),
        (["train", "--config", "nope.yaml"], "config file 'nope.yaml' does not exist"),
        (["train", "--config", TINY, "optim.lr=fast"], "optim.lr must be a number, got 'fast'"),
        (["train", "--config", TINY, "train.epoch=3"], "unknown config key 'train.epoch'"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spherevae train: error:") and message in err
    assert len(err.splitlines()) == 1


def test_divergence_exits_1_with_the_reason(tmp_path, capsys):
    argv = [
        "train",
        "--config",
        TINY,
        f"train.out_dir={tmp_path}",
        "objective.name=standard",
        "optim.lr_decay=1e8",
        "train.epochs=6",
        "train.log_every=1",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "training diverged at epoch" in err and len(err.splitlines()) == 1
