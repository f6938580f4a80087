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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "run", "--samplers", "vfm"], "argument --samplers: invalid choice: 'vfm'"),
        (["sweep", "--config", "s", "--backend", "rey"], "argument --backend: invalid choice: 'rey'"),
        (["sweep", "--config", "s", "--workers", "0"], "argument --workers: must be an integer >= 1, got '0'"),
        (["sweep", "--config", "s", "--workers", "-2"], "argument --workers: must be an integer >= 1, got '-2'"),
        (["train", "--epochs", "3"], "unrecognized arguments: --epochs"),
    ],
)
def test_bad_flags_and_choices_are_one_line_and_a_hint(argv, message, capsys):
    """argparse's own errors keep the CLI's contract: one error line (no usage block), exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == f"see: spherevae {argv[0]} --help"
    assert lines[0].startswith(f"spherevae {argv[0]}: error: {message}")


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spherevae sweep") and "--workers WORKERS" in out


@pytest.mark.parametrize("command", [["train", "--resume"], ["evaluate"]])
def test_a_path_that_is_no_run_directory_says_so(command, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("{}\n")
    for path, message in ((tmp_path / "nope", f"'{tmp_path / 'nope'}' is not a run directory (no config.yaml in it)"),
                          (tmp_path / "run" / "config.yaml",
                           f"'{tmp_path / 'run' / 'config.yaml'}' is a file, not a run directory; give the "
                           f"directory that holds the run ('{tmp_path / 'run'}')")):
        assert main([*command, str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"spherevae {command[0]}: error: {message}"


@pytest.mark.parametrize("override", ["train.run_name=other", "train.out_dir=/elsewhere"])
def test_resume_refuses_to_move_the_run(override, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    assert main(["train", "--resume", str(run), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"spherevae train: error: --resume {run} gives the run directory; drop {override!r} "
                   "(a run elsewhere is a new run: --config)")


def test_train_checks_what_it_builds_before_any_work(tmp_path, capsys):
    """A bad data set or model is one line naming the field, before a run directory exists."""
    for override, message in (("data.name=mnsit", "data.name must be one of"),
                              ("model.channels=[4,4,4,4]", "model.channels has 4 stages")):
        assert main(["train", "--config", TINY, f"train.out_dir={tmp_path}", override]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"spherevae train: error: {message}") and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_evaluate_of_a_run_fit_on_tensors_says_how_to_evaluate_it(tmp_path, capsys):
    import torch

    import spherevae
    from spherevae.models.config import ModelConfig
    from spherevae.models.vae import VAE

    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    spherevae.fit(VAE(ModelConfig.from_preset("tiny")), train=images, test=images[:16],
                  epochs=1, batch_size=32, out_dir=tmp_path / "mine")
    assert main(["evaluate", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.name 'in-memory'" in err
    assert "spherevae.evaluation.context.EvalContext" in err and "PIPELINE" in err


def test_sweep_cli_errors_are_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """Grid-key overrides, typos and a missing ray are refused before sweep.json is written."""
    import sys

    out = tmp_path / "out"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase: {TINY}\nout_dir: {out}\ngrid: {{model.latent_dim: [4, 8]}}\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    for args, message in ((["model.latent_dim=abc"], "which the grid sweeps [4, 8]"),
                          (["trian.epochs=1"], "run latent_dim=4: unknown config key 'trian'"),
                          (["--backend", "ray"], "pip install 'spherevae[ray]'")):
        assert main(["sweep", "--config", str(sweep), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("spherevae sweep: error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_resume_may_change_how_the_run_reports(tmp_path, capsys):
    """train.loggers (like train.tensorboard) may change on resume; it is recorded in history.jsonl."""
    pytest.importorskip("tensorboard")
    assert main(["train", "--config", TINY, f"train.out_dir={tmp_path}", "train.epochs=1"]) == 0
    run = tmp_path / "digits-tiny"
    assert main(["train", "--resume", str(run), "train.epochs=2", "train.loggers=[tensorboard]"]) == 0
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["changes"]["train.loggers"] == [[], ["tensorboard"]]


def test_resume_rules_cover_logger_options_but_not_the_training():
    from spherevae.io.errors import UserError
    from spherevae.training.resume import resume_changes

    saved = {"train": {"loggers": [], "logger_options": {}}, "optim": {"lr": 1e-3}}
    new = {"train": {"loggers": ["mlflow"], "logger_options": {"mlflow": {"experiment": "x"}}},
           "optim": {"lr": 1e-3}}
    changes = resume_changes(saved, new, Path("run"))
    assert changes == {"train.loggers": [[], ["mlflow"]],
                       "train.logger_options": [{}, None],
                       "train.logger_options.mlflow.experiment": [None, "x"]}
    with pytest.raises(UserError, match=r"changed optim\.lr .*a resume may change only .*train\.loggers"):
        resume_changes(saved, {**new, "optim": {"lr": 0.5}}, Path("run"))


def test_resume_of_a_finished_run_says_nothing_was_done(tmp_path, capsys):
    assert main(["train", "--config", TINY, f"train.out_dir={tmp_path}", "train.epochs=1"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    weights = (run_dir / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{run_dir}: already trained to 1 epoch; nothing to do (train.epochs=2 or more "
                   "extends it)", str(run_dir)]
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == weights
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_the_pinned_quench_is_worded_as_a_consequence_of_the_users_change():
    from spherevae.training.resume import change_words

    words = change_words({"train.epochs": [3, 6], "schedule.params": [{}, {"quench_epochs": 1}]})
    assert words.startswith("your change train.epochs 3 -> 6; as a consequence the schedule keeps "
                            "the curve it had over the first 3 epochs (quench_epochs=1 pinned)")
    assert "schedule.params {}" not in words
