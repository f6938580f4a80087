"""Sweep expansion, validation and result collection (the integration tests that
train real runs are in test_experiments_integration.py)."""

import csv
import json
from pathlib import Path

import pytest

from spherevae.experiments.quickstart import headline_table
from spherevae.experiments.spec import RunResult, expand_grid, load_sweep
from spherevae.experiments.sweep import collect_results


def _write(tmp_path: Path, text: str, base: bool = True) -> Path:
    if base:
        (tmp_path / "base.yaml").write_text("train: {epochs: 1}\n")
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_expand_grid_is_the_cartesian_product_with_variants(tmp_path):
    p = _write(
        tmp_path,
        """
name: s
base: base.yaml
out_dir: OUT
overrides: [train.epochs=2]
variants:
  standard: [objective.name=standard]
  compressed: [objective.name=compressed]
grid:
  model.latent_dim: [16, 32, 64]
  objective.beta: [0.5, 1.0]
""".replace("OUT", str(tmp_path / "out")),
    )
    sweep = load_sweep(p, ["train.seed=3"])
    specs = expand_grid(sweep)
    assert len(specs) == 2 * 3 * 2
    names = [s.name for s in specs]
    assert len(set(names)) == len(names)
    first = specs[0]
    assert first.name == "standard-latent_dim=16-beta=0.5"
    # sweep-wide overrides first, then the variant's, then the grid point's
    assert first.overrides == (
        "train.epochs=2",
        "train.seed=3",
        "objective.name=standard",
        "model.latent_dim=16",
        "objective.beta=0.5",
    )
    assert first.params == {"variant": "standard", "model.latent_dim": 16, "objective.beta": 0.5}
    assert first.run_dir == tmp_path / "out" / "runs" / first.name
    assert sweep.base == (tmp_path / "base.yaml").resolve()


def test_grid_without_variants_and_scalar_values(tmp_path):
    p = _write(tmp_path, "name: s\nbase: base.yaml\ngrid: {train.seed: 7}\n")
    specs = expand_grid(load_sweep(p))
    assert [s.name for s in specs] == ["seed=7"]


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("name: s\nbase: base.yaml\nbogus: 1\n", ValueError, r"unknown field\(s\) \['bogus'\]"),
        ("base: base.yaml\n", ValueError, "missing field 'name'"),
        ("name: s\nbase: nothere.yaml\n", FileNotFoundError, "nothere.yaml"),
        ("name: s\nbase: base.yaml\nbackend: slurm\n", ValueError, r"'backend' must be one of \['local', 'ray'\]"),
        ("name: s\nbase: base.yaml\nworkers: 0\n", ValueError, "'workers' must be an integer >= 1"),
        ("name: s\nbase: base.yaml\ngrid: {a.b: []}\n", ValueError, "grid.a.b"),
        ("name: s\nbase: base.yaml\noverrides: [oops]\n", ValueError, "key.sub=value"),
    ],
)
def test_bad_sweep_configs_name_the_field(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_sweep(_write(tmp_path, text))


def test_missing_sweep_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "none.yaml")


def test_collect_results_writes_matching_csv_and_json(tmp_path):
    results = [
        RunResult("b", {"n": 2}, "done", {"fid_domain_recon": 3.5, "rmse_percent": 9.0, "nested": {"x": 1}}),
        RunResult("a", {"n": 1}, "failed", error="ValueError: boom"),
    ]
    rows = collect_results(tmp_path, results)
    assert [r["name"] for r in rows] == ["a", "b"]
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    with (tmp_path / "results.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert csv_rows[0]["error"] == "ValueError: boom"
    assert float(csv_rows[1]["fid_domain_recon"]) == 3.5
    assert "nested" not in csv_rows[1]  # only scalars go to the table


def test_headline_table_lists_every_run():
    table = headline_table([
        RunResult("standard", {}, "done", {"rmse_percent": 10.0, "main_sampler": "prior"}),
        RunResult("compressed", {}, "done", {"rmse_percent": 11.5}),
    ])
    lines = table.splitlines()
    assert "standard" in lines[0] and "compressed" in lines[0]
    rmse = next(line for line in lines if line.startswith("RMSE"))
    assert "10" in rmse and "11.5" in rmse


def test_every_shipped_config_and_sweep_validates() -> None:
    """Each file in configs/ loads; each sweep expands to runs whose configs all validate."""
    from spherevae.training.config import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    run_configs = sorted(root.glob("*.yaml"))
    sweeps = sorted((root / "sweeps").glob("*.yaml"))
    assert len(run_configs) >= 8 and len(sweeps) >= 6
    for path in run_configs:
        load_config(path, [])
    for path in sweeps:
        specs = expand_grid(load_sweep(path))
        assert specs, path
        assert len({s.name for s in specs}) == len(specs), f"{path}: duplicate run names"
        for spec in specs:
            load_config(spec.base, list(spec.overrides))


TINY = Path(__file__).resolve().parents[2] / "configs" / "digits-tiny.yaml"


@pytest.mark.parametrize(
    ("text", "cli", "match"),
    [
        ("evaluate: {num_sample: 10}\n", [],
         r"sweep s: sweep field 'evaluate' has unknown option\(s\) \['num_sample'\]; the options are \[.*'num_samples'"),
        ("evaluate: {num_samples: 0}\n", [], r"sweep s: sweep field 'evaluate': .*'num_samples' must be an integer >= 1"),
        ("grid: {model.latentdim: [4, 8]}\n", [], r"sweep s: run latentdim=4: unknown config key 'model\.latentdim'"),
        ("grid: {model.latent_dim: [4, 8]}\n", ["trian.epochs=1"], r"run latent_dim=4: unknown config key 'trian'"),
        ("grid: {model.latent_dim: [4, 8]}\n", ["model.latent_dim=abc"],
         r"override 'model\.latent_dim=abc' \(from the sweep's overrides or the command line\) sets "
         r"model\.latent_dim, which the grid sweeps \[4, 8\]"),
        ("variants: {a: [model.latent_dim=3]}\ngrid: {model.latent_dim: [4]}\n", [], r"\(from variant 'a'\)"),
        ("grid: {model.latent_dim: [4, 1]}\n", [], r"run latent_dim=1: model\.latent_dim must be an integer >= 2"),
        ("grid: {objective.loss_preset: [full, ful]}\n", [], r"run loss_preset=ful: objective\.loss_preset must be"),
        # evaluate option values, not only names (a second walkthrough found these late)
        ("evaluate: {samplers: [vmf, vfm]}\n", [], r"'evaluate': evaluate sampler must be one of \[.*\], got 'vfm'"),
        ("evaluate: {backbone: incep}\n", [], r"'evaluate': evaluate option 'backbone' must be one of"),
        ("evaluate: {backbone: inception, inception_weights: /nonexistent/w.pth}\n", [],
         r"'evaluate': Inception weights file /nonexistent/w\.pth does not exist"),
        ("evaluate: {inception_weights: /x.pth}\n", [], r"'inception_weights' is used only with backbone 'inception'"),
        ("variants: {a: [schedule.name=constant]}\n", ["schedule.name=linear_warmup"],
         r"override 'schedule\.name=linear_warmup' sets schedule\.name, which variant 'a' sets too"),
    ],
)
def test_a_sweep_is_checked_whole_before_its_first_run_and_writes_nothing(tmp_path, text, cli, match):
    """Every run's config (base + overrides + grid point) and the evaluate options are
    checked before any run trains or anything is written into out_dir."""
    from spherevae.experiments.sweep import run_sweep
    from spherevae.io.errors import UserError

    out = tmp_path / "out"
    sweep = load_sweep(_write(tmp_path, f"name: s\nbase: {TINY}\nout_dir: {out}\n" + text, base=False), cli)
    with pytest.raises(UserError, match=match):
        run_sweep(sweep, log=lambda _m: None)
    assert not out.exists()


@pytest.mark.parametrize("workers", [0, -1, True])
def test_run_sweep_refuses_fewer_than_one_worker(tmp_path, workers):
    from spherevae.experiments.sweep import run_sweep

    sweep = load_sweep(_write(tmp_path, f"name: s\nbase: {TINY}\nout_dir: {tmp_path / 'out'}\n", base=False))
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_sweep(sweep, workers=workers, log=lambda _m: None)
    assert not (tmp_path / "out").exists()


def test_the_ray_backend_without_ray_is_one_error_naming_the_extra_before_any_write(tmp_path, monkeypatch):
    import sys

    from spherevae._utils.optional import MissingExtraError
    from spherevae.experiments.sweep import run_sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    sweep = load_sweep(_write(tmp_path, f"name: s\nbase: {TINY}\nout_dir: {tmp_path / 'out'}\n", base=False))
    with pytest.raises(MissingExtraError, match=r"the ray sweep backend needs .*'ray'.*pip install 'spherevae\[ray\]'"):
        run_sweep(sweep, backend="ray", log=lambda _m: None)
    assert not (tmp_path / "out").exists()




def _row(name, variant, rmse, paper, fitted, **extra):
    """A results row as collect_results writes it (metrics flattened beside the params)."""
    return {"name": name, "status": "done", "variant": variant, "rmse_percent": rmse,
            "main_sampler": "vmf", "fid_backbone": "domain", "fid_domain_vmf_recon": paper,
            "fid_domain_vmf_test": paper + 1.0, "fid_domain_gmm_recon": fitted,
            "fid_domain_gmm_test": fitted + 1.0, "fid_domain_prior_sphere_recon": 0.001,
            "timings_s_fid": 1.0, **extra}


def test_the_closing_table_has_one_line_per_run_with_both_references():
    from spherevae.experiments.sweep import results_table

    rows = [_row("quench", "quench", 7.5, 20.0, 12.0), _row("constant", "constant", 8.25, 30.0, 35.0),
            {"name": "broken", "status": "failed", "variant": "broken", "error": "boom"}]
    lines = results_table(rows, ["variant"]).splitlines()
    assert len(lines) == 1 + len(rows)  # a header, then one line per run
    assert lines[0].split() == ["run", "status", "variant", "RMSE", "%", "paper", "FID", "vs", "recon",
                                "paper", "FID", "vs", "test", "fitted", "FID", "vs", "recon",
                                "fitted", "FID", "vs", "test"]
    # The best fitted sampler is the lowest fitted FID (prior_sphere is a fixed prior: never).
    assert lines[1].split() == ["quench", "done", "quench", "7.5", "20", "(vmf)", "21", "(vmf)",
                                "12", "(gmm)", "13", "(gmm)"]
    assert lines[2].split() == ["constant", "done", "constant", "8.25", "30", "(vmf)", "31", "(vmf)",
                                "30", "(vmf)", "31", "(vmf)"]
    assert lines[3].split() == ["broken", "failed", "broken"]


def test_identical_variants_are_found_and_timings_do_not_tell_them_apart():
    from spherevae.experiments.sweep import identical_runs

    rows = [_row("quench", "quench", 7.5, 20.0, 12.0, timings_s_fid=3.0),
            _row("constant", "constant", 7.5, 20.0, 12.0), _row("other", "other", 7.6, 20.0, 12.0)]
    assert identical_runs(rows) == [["quench", "constant"]]
    assert identical_runs(rows[1:]) == []


def test_sweep_base_may_be_a_packaged_name_and_evaluate_overrides_split_off(tmp_path):
    from spherevae.configs import resolve

    p = tmp_path / "sweep.yaml"
    p.write_text("name: s\nbase: digits-tiny\ngrid: {train.seed: [0]}\n")
    sweep = load_sweep(p, ["train.epochs=1", "evaluate.num_samples=1000", "evaluate.max_test=50"])
    assert sweep.base == resolve("digits-tiny").resolve()
    assert sweep.overrides == ("train.epochs=1",)
    assert sweep.evaluate == {"num_samples": 1000, "max_test": 50}
    (tmp_path / "mine.yaml").write_text("data: {name: digits}\n")  # a file beside the sweep wins
    p.write_text("name: s\nbase: mine.yaml\n")
    assert load_sweep(p).base == (tmp_path / "mine.yaml").resolve()
    p.write_text("name: s\nbase: no-such-config\n")
    with pytest.raises(FileNotFoundError, match=r"sweep field 'base': run config .*no-such-config does not exist"):
        load_sweep(p)


def test_an_unknown_evaluate_override_is_one_clear_error_before_any_run(tmp_path, capsys):
    from spherevae.cli import main

    p = tmp_path / "sweep.yaml"
    p.write_text(f"name: s\nbase: digits-tiny\nout_dir: {tmp_path / 'out'}\n")
    assert main(["sweep", "--config", str(p), "evaluate.num_sample=10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown option(s) ['num_sample']" in err
    assert not (tmp_path / "out" / "runs").exists()
    assert main(["quickstart", "--out", str(tmp_path / "qs"), "evaluate.num_sample=10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown evaluate option(s) ['num_sample']" in err
    assert not (tmp_path / "qs").exists()


def test_a_workers_lines_name_their_run_on_every_line_and_the_process_is_restored(capsys):
    import logging
    import sys

    from spherevae.experiments.sweep import _worker_logging

    logger = logging.getLogger("spherevae")
    before = (sys.stderr, logger.level, list(logger.handlers))
    with _worker_logging("run-a", logging.INFO):
        assert not sys.stderr.isatty()  # the trainer then logs lines, not a tqdm bar
        assert sys.stderr.encoding == before[0].encoding  # everything else is the stream's
        logger.info("run-a: epoch 1/2: loss 3")  # the trainer's lines already name the run
        logger.info("[1/6] loading")
        logger.warning("two\nlines")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        logger.debug("below the level")
    assert (sys.stderr, logger.level, list(logger.handlers)) == before
    err = capsys.readouterr().err.splitlines()
    assert err[:5] == ["run-a: epoch 1/2: loss 3", "run-a: [1/6] loading", "run-a: warning: two",
                       "run-a: lines", "run-a: error: failed"]
    assert err[5] == "run-a: Traceback (most recent call last):" and err[-1] == "run-a: ValueError: boom"
    assert all(line.startswith("run-a: ") for line in err) and "below the level" not in "\n".join(err)
    # A parent logging everything (NOTSET) means everything, not the worker root's WARNING.
    with _worker_logging("run-b", logging.NOTSET):
        logger.debug("shown")
    assert capsys.readouterr().err == "run-b: shown\n"


@pytest.mark.parametrize("workers", [0, -2, True, 1.5])
def test_run_local_refuses_a_bad_worker_count(workers):
    from spherevae.experiments.sweep import run_local
    from spherevae.io.errors import UserError

    with pytest.raises(UserError, match=r"workers must be an integer >= 1, got"):
        run_local([], workers, print)


def test_a_finished_run_is_evaluated_again_only_when_a_compared_option_changed(tmp_path):
    from spherevae.experiments.spec import RunSpec
    from spherevae.experiments.sweep import execute_run, option_changes

    recorded = {"num_samples": 10000, "samplers": ["prior", "vmf"], "feature_seeds": [0, 1, 2],
                "device": "cpu", "batch_size": 500}
    assert option_changes(recorded, {"num_samples": 10000, "samplers": ("prior", "vmf")}) == ""
    assert option_changes(recorded, {"device": "auto", "batch_size": 64, "progress": False}) == ""
    assert option_changes(recorded, {"unrecorded_option": 1}) == ""
    assert option_changes(None, {"num_samples": 5}) == ""  # an evaluation older than the record
    assert (option_changes(recorded, {"feature_seeds": [0], "num_samples": 200})
            == "feature_seeds: [0, 1, 2] -> [0], num_samples: 10000 -> 200")

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"rmse_percent": 9.0, "complete": True, "eval_options": recorded}))
    same = RunSpec("r", run, tmp_path / "no-such-config.yaml", (), {}, {"num_samples": 10000})
    assert execute_run(same).status == "skipped"
    changed = RunSpec("r", run, tmp_path / "no-such-config.yaml", (), {}, {"num_samples": 200})
    with pytest.warns(UserWarning, match=r"was made with other evaluate options \(num_samples: 10000 -> 200\); "
                                         r"evaluating r again"):
        result = execute_run(changed)
    assert result.status == "failed"  # it went on to train and evaluate (here: no config)
