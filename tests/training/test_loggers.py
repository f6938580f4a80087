"""Experiment trackers: MLflow against a real local SQLite store, W&B offline, TensorBoard,
and the error for a logger that is asked for but not installed."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from spherevae._utils.optional import MissingExtraError, require
from spherevae.training.config import load_config
from spherevae.training.loggers import LOGGERS, check_loggers, flatten, make_loggers
from spherevae.training.runs import train

TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


def _cfg(tmp_path, *overrides):
    return load_config(TINY, [f"train.out_dir={tmp_path / 'runs'}", "train.epochs=3",
                              "data.max_train=256", "data.max_test=128", *overrides])


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_flatten_matches_a_hand_written_expectation():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {
        "a.b": 1, "a.c.d": "[1, 2]", "e": "x"}


# SQLAlchemy's deprecation notice from inside MLflow's store, not ours.
_SQLA = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


@_SQLA
def test_mlflow_records_params_epoch_metrics_and_artifacts_in_sqlite(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = json.dumps({"mlflow": {"tracking_uri": uri, "experiment": "tests",
                                  "artifact_location": (tmp_path / "artifacts").as_uri()}})
    run_dir = train(_cfg(tmp_path, "train.loggers=[mlflow, tensorboard]",
                         f"train.logger_options={opts}"))

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["objective.name"] == "compressed"
    assert run.data.params["train.epochs"] == "3"
    # Every epoch of metrics.jsonl, at its epoch as the step, with the same value.
    history = _history(run_dir)
    logged = client.get_metric_history(run.info.run_id, "test_rmse_percent")
    assert sorted((m.step, m.value) for m in logged) == [
        (h["epoch"], pytest.approx(h["test_rmse_percent"])) for h in history]
    assert len(client.get_metric_history(run.info.run_id, "lr.model")) == 3
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"config.yaml", "metrics.jsonl", "model.safetensors"}
    stored = Path(client.download_artifacts(run.info.run_id, "metrics.jsonl", str(tmp_path / "dl")))
    assert stored.read_text() == (run_dir / "metrics.jsonl").read_text()
    # A logger the trainer never finalized (a crash) is marked FAILED at process exit.
    (lg,) = make_loggers(["mlflow"], tmp_path, "crashed",
                         {"mlflow": {"tracking_uri": uri, "experiment": "tests"}})
    lg._at_exit()  # what the interpreter runs at exit (registered with atexit)
    crashed = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "crashed"]
    assert [r.info.status for r in crashed] == ["FAILED"]
    lg.finalize("success")  # already finalized: nothing changes
    assert client.get_run(crashed[0].info.run_id).info.status == "FAILED"
    if importlib.util.find_spec("tensorboard") is not None:  # both loggers at once
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(run_dir / "tensorboard"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("test_rmse_percent")] == [0, 1, 2]


def test_wandb_offline_writes_a_local_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    (lg,) = make_loggers(["wandb"], tmp_path, "unit", {"wandb": {"dir": str(tmp_path)}})
    lg.log_hyperparams({"objective": {"name": "standard", "beta": 0.5}})
    lg.log_metrics({"epoch": 0, "test_rmse_percent": 12.5, "lr": {"model": 0.001}}, 0)
    lg.log_metrics({"epoch": 1, "test_rmse_percent": 11.25, "lr": {"model": 0.001}}, 1)
    (tmp_path / "note.txt").write_text("artifact")
    lg.log_artifact(tmp_path / "note.txt")
    assert lg.inner.run.config["objective"] == {"name": "standard", "beta": 0.5}
    lg.finalize("success")
    import wandb

    wandb.teardown()  # waits for W&B's service process to flush and stop
    # The offline record (protobuf) holds the history rows, config and artifact by name.
    (record,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for key in (b"test_rmse_percent", b"lr.model", b"note.txt", b"12.5", b"11.25", b"standard"):
        assert key in data


def test_missing_logger_package_fails_before_any_work(tmp_path, monkeypatch):
    # A None entry in sys.modules is how Python marks a module as absent.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    cfg = _cfg(tmp_path, "train.loggers=[mlflow]")
    with pytest.raises(MissingExtraError, match=r"pip install 'spherevae\[mlflow\]'"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


def test_unknown_logger_and_bad_options_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"train.loggers must be one of \['mlflow', 'tensorboard', 'wandb'\]"):
        _cfg(tmp_path, "train.loggers=[neptune]")
    with pytest.raises(ValueError, match=r"train\.logger_options has"):
        make_loggers([], tmp_path, "r", {"mlflow": {}})
    pytest.importorskip("mlflow")
    with pytest.raises(ValueError, match=r"train.logger_options.mlflow: .*tracking_url"):
        make_loggers(["mlflow"], tmp_path, "r", {"mlflow": {"tracking_url": "x"}})


def test_require_names_the_extra():
    require("json", "full", "anything")  # present: no error
    with pytest.raises(MissingExtraError, match=r"spherevae train needs .* pip install 'spherevae\[full\]'"):
        require("spherevae_no_such_module", "full", "spherevae train")
    assert isinstance(MissingExtraError("x"), ValueError)
    check_loggers([])
    assert set(LOGGERS) == {"tensorboard", "mlflow", "wandb"}


def _readme_section(title: str) -> str:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    return text.split(f"### {title}\n", 1)[1].split("```", 1)[0]


def test_readme_names_the_artifacts_a_tracker_really_gets(tmp_path, monkeypatch):
    """The README's artifact list is what the trainer passes to every logger's log_artifact."""
    import re

    from spherevae.training.loggers import LoggerSpec

    received: list[str] = []

    class Recording:
        def __init__(self, run_dir, run_name):
            pass

        def log_hyperparams(self, params): ...
        def log_metrics(self, metrics, step): ...
        def finalize(self, status): ...

        def log_artifact(self, path):
            assert Path(path).is_file(), path
            received.append(Path(path).name)

    monkeypatch.setitem(LOGGERS, "recording", LoggerSpec(Recording, "json", "full"))
    train(_cfg(tmp_path, "train.epochs=1", "train.loggers=[recording]"))
    said = set(re.findall(r"`([\w-]+\.\w+)`", _readme_section("Experiment tracking")))
    assert said == set(received) == {"config.yaml", "metrics.jsonl", "model.safetensors"}
    import spherevae.training.loggers

    assert "model.pt" not in spherevae.training.loggers.__doc__ and "model.safetensors" in spherevae.training.loggers.__doc__


@_SQLA
def test_mlflow_artifacts_go_beside_the_sqlite_store_not_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where the command runs: nothing of MLflow's may land here
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    opts = json.dumps({"mlflow": {"tracking_uri": uri, "experiment": "beside"}})
    run_dir = train(_cfg(tmp_path, "train.loggers=[mlflow]", f"train.logger_options={opts}"))
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("beside")
    assert exp.artifact_location == (store / "mlartifacts").as_uri()
    (run,) = client.search_runs([exp.experiment_id])
    stored = {p.name for p in (store / "mlartifacts").rglob("*") if p.is_file()}
    assert stored == {"config.yaml", "metrics.jsonl", "model.safetensors"}
    assert list(work.iterdir()) == [] and run.info.run_name == run_dir.name


class _RecordingLogger:
    """A logger of the user's own: the four methods of the interface, recording the calls."""

    def __init__(self, run_dir=None, run_name=None, tag="instance"):
        self.calls: list[tuple[str, object]] = []
        self.tag = tag

    def log_hyperparams(self, params):
        self.calls.append(("hyperparams", params["objective"]["name"]))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", step))

    def log_artifact(self, path):
        self.calls.append(("artifact", Path(path).name))

    def finalize(self, status):
        self.calls.append(("finalize", status))


def test_a_logger_instance_and_a_registered_logger_record_the_run(tmp_path):
    from spherevae.training import LoggerSpec, Trainer
    from spherevae.training.runs import build_model, load_split

    made: list[_RecordingLogger] = []

    def factory(run_dir, run_name, tag="registered"):
        made.append(_RecordingLogger(tag=tag))
        return made[-1]

    LOGGERS["recording"] = LoggerSpec(factory, "json", "none")  # `json` is always importable
    try:
        cfg = _cfg(tmp_path, "train.epochs=2", "train.loggers=[recording]",
                   "train.logger_options={recording: {tag: mine}}")
        instance = _RecordingLogger()
        train_ds, test_ds = load_split(cfg, "train"), load_split(cfg, "test")
        model = build_model(cfg, tuple(train_ds.images.shape[1:]))
        Trainer(cfg, model, train_ds, test_ds, loggers=[instance]).fit()
    finally:
        del LOGGERS["recording"]
    expected = [("hyperparams", "compressed"), ("metrics", 0), ("metrics", 1),
                ("artifact", "config.yaml"), ("artifact", "metrics.jsonl"),
                ("artifact", "model.safetensors"), ("finalize", "success")]
    assert instance.calls == expected
    assert len(made) == 1 and made[0].tag == "mine" and made[0].calls == expected
    with pytest.raises(TypeError, match="lacks \\['log_artifact', 'finalize'\\]"):
        Trainer(cfg, model, train_ds, test_ds, loggers=[type("Half", (), {
            "log_hyperparams": lambda *a: None, "log_metrics": lambda *a: None})()])
