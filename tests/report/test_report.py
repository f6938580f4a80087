"""The HTML report and the metric registry: the page parsed statically (rows, best marks,
images), and loaded in a real headless Chromium (renders, no console errors, sorts)."""

import base64
import io
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spherevae import plots
from spherevae.evaluation.metric_info import GROUPS, KEYS, METRICS, better, describe, metric_key
from spherevae.report.comparability import comparable_groups, incomparability
from spherevae.report.html import RunSummary, load_run_summary, write_report


class _Page(HTMLParser):
    """Tables as lists of rows of (text, attrs) cells; image sources; headings."""

    def __init__(self):
        super().__init__()
        self.tables, self.srcs, self.scripts, self.h2 = {}, [], 0, []
        self._table = self._row = self._cell = None
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", str(len(self.tables))), [])
        elif tag == "tr" and self._table is not None:
            self._row = {"class": a.get("class", ""), "cells": []}
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, "", a]
            self._row["cells"].append(self._cell)
        elif tag == "img":
            self.srcs.append(a["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._in_h2:
            self.h2[-1] += data


def _png(tmp_path, name, fig):
    return plots.save_figure(fig, tmp_path / f"{name}.png")


STANDARD = {
    "num_test": 100, "rmse_percent": 9.1, "mse_sum": 70.0, "main_sampler": "prior",
    "fid_backbone": "domain", "fid_domain_recon": 66.0, "fid_domain_prior_recon": 66.0,
    "fid_domain_vmf_recon": 241.0, "fid_domain_gaussian_recon": 40.0,
    "fid_domain_prior_test": 70.0, "fid_domain_gaussian_test": 45.0,
    "fid_domain_reconstruction_vs_test": 5.0, "knn_accuracy_k5": 0.7,
    "replica_angle_mean": 1.2, "collapse_collapsed_kl": 3, "timings_s": {"fid": 1.0},
}
COMPRESSED = {
    "num_test": 100, "rmse_percent": 7.5, "mse_sum": 52.0, "main_sampler": "vmf",
    "fid_backbone": "domain", "fid_domain_recon": 18.6, "fid_domain_vmf_recon": 18.6,
    "fid_domain_prior_sphere_recon": 30.0, "fid_domain_reconstruction_vs_test": 5.0,
    "fid_domain_vmf_test": 22.0,
    "knn_accuracy_k5": 0.8, "replica_angle_mean": 1.5, "collapse_collapsed_kl": 0,
    "warnings": ["FID: 100 test images < 128 feature dimensions"],
}


def _config(objective, beta):
    return {"data": {"name": "digits", "max_train": None}, "model": {"preset": "tiny", "latent_dim": 8},
            "objective": {"name": objective, "beta": beta}, "schedule": {"name": "constant"},
            "train": {"epochs": 3}}


def _runs(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = [torch.rand(4, 1, 8, 8, generator=g) for _ in range(3)]
    z, labels = torch.randn(60, 8, generator=g), torch.arange(60) % 3
    figs = {
        "samples": _png(tmp_path, "samples", plots.reconstruction_figure(*x)),
        "sphere_projection": _png(tmp_path, "sphere", plots.sphere_projection(
            z, labels, class_names=("zero", "one", "two"))),
    }
    hist = [{"epoch": e, "test_rmse_percent": 20.0 - e, "train_rmse_percent": 21.0 - e,
             "train_latent": 3.0 / (e + 1), "test_replica_angle_mean": 1.0} for e in range(3)]
    return [
        RunSummary("standard <a>", _config("standard", 1.0), STANDARD, figs, tuple(hist)),
        RunSummary("compressed", _config("compressed", 1.0), COMPRESSED, {"samples": figs["samples"]},
                   tuple(hist[:2])),
    ]


def _metric_rows(page, table="metrics"):
    """label -> (group, values as floats or None, indices marked best, description, direction)."""
    rows, group = {}, None
    for row in page.tables.get(table, [])[1:]:
        if row["class"] == "group":
            group = row["cells"][0][1]
            continue
        cells = row["cells"]
        values = [float(c[2]["data-v"]) if "data-v" in c[2] else None for c in cells[4:]]
        best = {i for i, c in enumerate(cells[4:]) if "best" in c[2].get("class", "")}
        rows[cells[0][2]["title"]] = (group, values, best, cells[1][1], cells[3][1])
    return rows


def _single_rows(page):
    """(key, run name) of each row of the per-run table."""
    return {(row["cells"][0][2]["title"], row["cells"][4][1]) for row in page.tables.get("single", [])[1:]}


def test_report_groups_rows_per_sampler_and_marks_the_best(tmp_path):
    page = _Page()
    page.feed(write_report(_runs(tmp_path), tmp_path / "r.html").read_text())
    rows = _metric_rows(page)
    # The headline alias mixes samplers (prior 66 vs vMF 18.6): never a row.
    assert "fid_domain_recon" not in rows and "fid_domain_test" not in rows
    assert rows["fid_domain_vmf_recon"][1] == [241.0, 18.6]
    # A metric only one run has is no comparison: it goes to the per-run table.
    assert "fid_domain_prior_recon" not in rows and "fid_domain_prior_sphere_recon" not in rows
    single = _single_rows(page)
    assert ("fid_domain_prior_recon", "standard <a>") in single
    assert ("fid_domain_prior_sphere_recon", "compressed") in single
    # KL-collapsed dims mean nothing for a compressed model: "not applicable", never starred,
    # and with one applicable value left the row is per-run only.
    assert "collapse_collapsed_kl" not in rows and ("collapse_collapsed_kl", "standard <a>") in single
    assert ("collapse_collapsed_kl", "compressed") not in single
    # Groups in registry order; a description, a unit and a direction on every row.
    assert [g for g in GROUPS if any(r[0] == g for r in rows.values())] == list(
        dict.fromkeys(r[0] for r in rows.values()))
    for key, (group, values, best, desc, direction) in rows.items():
        info = describe(key)
        assert group == info.group and desc == info.description and desc and info.unit
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        assert len(present) >= 2, key  # no comparison row with a single value
        # Independent reference: a plain loop over the present values.
        if info.direction is None:
            assert best == set()
        else:
            target = present[0][1]
            for _, v in present:
                target = min(target, v) if info.direction == "lower" else max(target, v)
            expected = {i for i, v in present if v == target}
            assert best == (set() if len(expected) == len(present) else expected), key
        assert direction.startswith({"lower": "↓", "higher": "↑", None: "diag"}[info.direction])
    assert rows["knn_accuracy_k5"][2] == {1} and rows["rmse_percent"][2] == {1}
    assert rows["fid_domain_reconstruction_vs_test"][2] == set()  # all equal: nothing stands out


def test_collapsed_kl_of_a_compressed_run_is_not_applicable(tmp_path):
    standard, compressed = _runs(tmp_path)
    other = RunSummary("standard-2", standard.config, {**STANDARD, "collapse_collapsed_kl": 1})
    page = _Page()
    page.feed(write_report([standard, compressed, other], tmp_path / "r.html").read_text())
    row = next(r for r in page.tables["metrics"] if r["cells"][0][2].get("title") == "collapse_collapsed_kl")
    texts = [c[1].strip() for c in row["cells"][4:]]
    assert texts[1] == "not applicable" and "best" not in row["cells"][5][2].get("class", "")
    assert _metric_rows(page)["collapse_collapsed_kl"][2] == {2}  # 1 < 3 among the standard runs


@pytest.mark.parametrize(("spreads", "starred", "note"), [
    ({}, True, "no spread measured"),  # no spreads: a best, with the caveat
    ({"fid_domain_vmf_recon_std": 1.0}, True, "no spread measured"),  # the runner-up has none
    ({"fid_domain_vmf_recon_std": 1.0, "other": 2.0}, True, "beyond"),  # 18.6±2 vs 241±4
    ({"fid_domain_vmf_recon_std": 120.0, "other": 2.0}, False, ""),  # 18.6±240 overlaps 241±4
])
def test_a_best_is_starred_only_where_the_spreads_separate(tmp_path, spreads, starred, note):
    standard, compressed = _runs(tmp_path)
    std = {"fid_domain_vmf_recon_std": spreads["other"]} if "other" in spreads else {}
    theirs = {k: v for k, v in spreads.items() if k != "other"}
    runs = [RunSummary(standard.name, standard.config, {**STANDARD, **std}),
            RunSummary(compressed.name, compressed.config, {**COMPRESSED, **theirs})]
    text = write_report(runs, tmp_path / "r.html").read_text()
    page = _Page()
    page.feed(text)
    assert _metric_rows(page)["fid_domain_vmf_recon"][2] == ({1} if starred else set())
    row = text.split("title='fid_domain_vmf_recon'", 1)[1].split("</tr>", 1)[0]
    assert note in row and ("★" in row) == starred
    if theirs:
        assert f"18.6 ± {theirs['fid_domain_vmf_recon_std']:.2g}" in row


def _verdict_rows(page, k=0):
    """The verdict table of comparable group ``k``: (against, sampler, better, FIDs, spread, cost)."""
    return [tuple(c[1] for c in row["cells"]) for row in page.tables[f"verdict-{k}"][1:]]


def test_report_header_verdict_and_self_containment(tmp_path):
    text = write_report(_runs(tmp_path), tmp_path / "r.html").read_text()
    page = _Page()
    page.feed(text)
    header = page.tables["runs"]
    cols = [c[1] for c in header[0]["cells"]]
    for needed in ("dataset", "n", "epochs", "β", "objective", "model", "FID features",
                   "test images (evaluation)", "test images (training curves)"):
        assert needed in cols
    first = dict(zip(cols, (c[1] for c in header[1]["cells"]), strict=True))
    assert first["run"] == "standard <a>" and first["n"] == "8" and first["objective"] == "standard"
    assert first["test images (evaluation)"] == "100" and first["test images (training curves)"] == "all"
    assert "standard &lt;a&gt;" in text and "<a>" not in text
    # One verdict per reference set and sampler family, each naming the winner's sampler,
    # both FIDs, the spread and the reconstruction cost; the verdict comes before the tables.
    assert _verdict_rows(page) == [
        ("reconstructions", "paper's sampler", "compressed (vmf)", "18.6 vs 66 (standard <a>, prior)",
         "no spread measured", "RMSE 7.5% vs 9.1%"),
        ("reconstructions", "best fitted sampler", "compressed (vmf)", "18.6 vs 40 (standard <a>, gaussian)",
         "no spread measured", "RMSE 7.5% vs 9.1%"),
        ("real test set", "paper's sampler", "compressed (vmf)", "22 vs 70 (standard <a>, prior)",
         "no spread measured", "RMSE 7.5% vs 9.1%"),
        ("real test set", "best fitted sampler", "compressed (vmf)", "22 vs 45 (standard <a>, gaussian)",
         "no spread measured", "RMSE 7.5% vs 9.1%"),
    ]
    assert text.index("id='verdict'") < text.index("<h2>Runs</h2>")
    assert "100 test images &lt; 128 feature dimensions" in text  # a run's warnings are shown
    assert "http://" not in text and "https://" not in text and page.scripts == 1
    assert page.h2[:3] == ["Runs", "Headline metrics", "Per-run metrics"]
    # 2 run figures + 1 for the second run + the MSE-FID plane + the overlaid curves.
    assert len(page.srcs) == 5
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert write_report(_runs(tmp_path), tmp_path / "r2.html").read_text() == text  # deterministic


def test_load_run_summary_names_the_missing_file(tmp_path):
    (tmp_path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(FileNotFoundError, match=r"metrics.json is missing \(run `spherevae evaluate` first"):
        load_run_summary(tmp_path)


def test_write_report_needs_a_run(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        write_report([], tmp_path / "r.html")


def test_report_plane_tells_every_run_and_sampler_apart(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    from spherevae.distributions.samplers import SAMPLERS

    drawn = []
    from spherevae.report import plane

    original = plane.mse_fid_plane
    monkeypatch.setattr(plane, "mse_fid_plane", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    names = list(SAMPLERS)
    standard = {**STANDARD, **{f"fid_domain_{s}_recon": 10.0 + i for i, s in enumerate(names)}}
    compressed = {**COMPRESSED, **{f"fid_domain_{s}_recon": 20.0 + i for i, s in enumerate(names[1:])}}
    runs = [RunSummary("s", _config("standard", 1.0), standard), RunSummary("c", _config("compressed", 1.0), compressed)]
    write_report(runs, tmp_path / "r.html")
    lines = drawn[0].axes[0].get_lines()
    assert len(lines) == 15
    assert len({(to_hex(line.get_color()), line.get_marker()) for line in lines}) == 15
    # The walkthrough's clash: standard gmm and compressed esag were both blue, both "o".
    style = {line.get_label(): (to_hex(line.get_color()), line.get_marker()) for line in lines}
    assert style["standard · gmm · β=1.0"] != style["compressed · esag · β=1.0"]
    assert style["standard · esag · β=1.0"][0] == style["compressed · esag · β=1.0"][0]


# --- runs that cannot be compared -----------------------------------------------------


def _fmnist_run(name="fmnist"):
    cfg = _config("compressed", 1.0)
    cfg["data"] = {"name": "fashion-mnist", "max_train": None}
    # A FID far below the digits runs': on other data it must not win.
    return RunSummary(name, cfg, {**COMPRESSED, "fid_domain_vmf_recon": 1.0, "fid_domain_recon": 1.0,
                                  "rmse_percent": 1.0})


def test_report_picks_a_best_only_among_runs_on_the_same_data(tmp_path):
    runs = [*_runs(tmp_path), _fmnist_run()]
    with pytest.warns(UserWarning, match=r"not comparable \(dataset: digits \(standard <a>, compressed\), "
                                         r"fashion-mnist \(fmnist\)\)"):
        text = write_report(runs, tmp_path / "r.html").read_text()
    page = _Page()
    page.feed(text)
    assert "id='incomparable'" in text and "These runs are not comparable" in text
    assert text.index("id='incomparable'") < text.index("<h2>Runs</h2>")  # at the top
    assert "Which model generates better on digits, domain FID features, 100 test images" in text
    assert "verdict-1" not in text  # fmnist is alone in its group: it wins nothing
    assert all(row[2].startswith("compressed") for row in _verdict_rows(page))
    rows = _metric_rows(page)
    assert rows["fid_domain_vmf_recon"][1] == [241.0, 18.6, 1.0]
    assert rows["fid_domain_vmf_recon"][2] == {1}  # the digits best; fmnist is alone in its group
    assert rows["rmse_percent"][2] == {1}
    # Two runs on different data: no verdict at all, and the reason.
    with pytest.warns(UserWarning, match="not comparable"):
        text = write_report([runs[1], runs[2]], tmp_path / "r2.html").read_text()
    assert "No verdict</b>: no two runs share data" in text and "Which model generates better" not in text


def test_report_tells_same_named_datasets_and_backbones_apart(tmp_path):
    a, b = _runs(tmp_path)
    fp = {"dataset": "folder", "image_shape": [1, 8, 8], "train": {"size": 9, "sample_sha256": "aa"},
          "test": {"size": 3, "sample_sha256": "bb"}}
    other = {**fp, "test": {"size": 3, "sample_sha256": "cc"}}
    same = [RunSummary(a.name, a.config, a.metrics, fingerprint=fp),
            RunSummary(b.name, b.config, b.metrics, fingerprint=dict(fp))]
    assert incomparability(same) is None and comparable_groups(same) == [[0, 1]]
    folders = [same[0], RunSummary(b.name, b.config, b.metrics, fingerprint=other)]
    assert "dataset: same name, different data" in incomparability(folders)
    inception = RunSummary(b.name, b.config, {**b.metrics, "fid_backbone": "inception"})
    assert incomparability([a, inception]) == "FID features: domain (standard <a>), inception (compressed)"
    fewer = RunSummary(b.name, b.config, {**b.metrics, "num_test": 50})
    assert incomparability([a, fewer]) == "test images: 100 (standard <a>), 50 (compressed)"


def _evaluated_run(root: Path, name: str, dataset: str, fid: float) -> Path:
    import json

    import yaml

    from spherevae.io.layout import RunLayout

    layout = RunLayout(root / name)
    layout.eval_dir.mkdir(parents=True)
    cfg = _config("compressed", 1.0)
    cfg["data"]["name"] = dataset
    layout.config.write_text(yaml.safe_dump(cfg))
    layout.eval_metrics.write_text(json.dumps({**COMPRESSED, "fid_domain_vmf_recon": fid}))
    return layout.root


def test_cli_report_on_incomparable_runs_warns_in_one_line(tmp_path, capsys):
    from spherevae.cli import main

    a = _evaluated_run(tmp_path, "digits-tiny", "digits", 20.0)
    b = _evaluated_run(tmp_path, "fmnist", "fashion-mnist", 5.0)
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spherevae report: warning: the runs' FIDs are not comparable")
    assert "digits (digits-tiny), fashion-mnist (fmnist)" in err[0]
    assert "Which model generates better" not in (tmp_path / "r.html").read_text()
    assert main(["report", str(a), str(a), "--out", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().err == ""  # comparable runs: no warning


# --- the registry -------------------------------------------------------------------


@pytest.mark.parametrize(("key", "group", "sampler", "direction"), [
    ("fid_domain_vmf_recon", "generation", "vmf", "lower"),
    ("fid_inception_gaussian_sphere_test", "generation", "gaussian_sphere", "lower"),
    ("precision_domain_prior", "generation", "prior", "higher"),
    ("kid_domain_vmf_recon", "generation", "vmf", "lower"),
    ("fid_domain_reconstruction_vs_test", "reconstruction", None, "lower"),
    ("knn_accuracy_k11", "latent geometry", None, "higher"),
    ("replica_angle_mean", "latent geometry", None, None),
])
def test_describe_fills_in_the_parts(key, group, sampler, direction):
    info = describe(key)
    assert (info.group, info.sampler, info.direction) == (group, sampler, direction)
    assert "{" not in info.label + info.description
    if sampler:
        assert sampler in info.label and sampler in info.description


@pytest.mark.parametrize("key", ["fid_domain_recon", "fid_domain_test", "num_test", "main_sampler",
                                 "timings_s", "collapse_threshold_relative"])
def test_describe_leaves_out_what_is_not_a_comparable_metric(key):
    assert describe(key) is None


def test_registry_entries_are_well_formed():
    for info in METRICS.values():
        assert info.group in GROUPS and info.direction in ("lower", "higher", None)
        assert info.label and info.description and not info.description.endswith(".")


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6), st.just(math.nan)), max_size=6),
       st.sampled_from(["lower", "higher", None]))
def test_better_matches_a_plain_loop(values, direction):
    got = better(values, direction)
    present = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if direction is None or len(present) < 2:
        assert got == set()
        return
    sign = 1 if direction == "lower" else -1
    best = min(sign * v for _, v in present)
    expected = {i for i, v in present if sign * v == best}
    assert got == (set() if len(expected) == len(present) else expected)


# --- in a browser -------------------------------------------------------------------


def _chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


_COLUMN = """
var t=document.getElementById(arguments[0]),col=arguments[1];
return Array.from(t.querySelectorAll('tbody')).map(tb =>
  Array.from(tb.querySelectorAll('tr:not(.group)')).map(r => {
    var c=r.cells[col]; return c.hasAttribute('data-v') ? parseFloat(c.getAttribute('data-v')) : null;}));
"""


def _sorted_with_missing_last(values, reverse):
    present = sorted((v for v in values if v is not None), reverse=reverse)
    return present + [None] * (len(values) - len(present))


def _browser_runs(tmp_path):
    """Two runs with the figures evaluate draws at their real sizes (a wide sampler grid,
    histograms, the cap zoom), so the widths in the browser are the real ones."""
    standard, compressed = _runs(tmp_path)
    g = torch.Generator().manual_seed(1)
    samples = {s: torch.rand(16, 1, 8, 8, generator=g) for s in
               ("prior", "prior_sphere", "vmf", "esag", "vmf_mixture", "gaussian_sphere", "gaussian", "gmm")}
    mu = torch.randn(200, 8, generator=g)
    cap = torch.nn.functional.normalize(torch.randn(300, 8, generator=g) * 0.1 + 1.0, dim=1)
    extra = {
        "samples_by_sampler": _png(tmp_path, "grid", plots.sampler_grid_figure(
            samples, {s: 10.0 + i for i, s in enumerate(samples)}, fid_label="FID domain")),
        "latent_histograms": _png(tmp_path, "hist", plots.latent_histograms(mu, mu.abs(), mu, torch.rand(200, 7))),
        "latent_spectrum": _png(tmp_path, "spectrum", plots.latent_spectrum_figure(mu.std(0), torch.rand(7), 0.1)),
        "training_curves": _png(tmp_path, "curves", plots.training_curves(list(standard.history))),
    }
    zoomed = _png(tmp_path, "cap", plots.sphere_projection(cap, torch.arange(300) % 3))
    return [RunSummary(standard.name, standard.config, standard.metrics, {**standard.figures, **extra},
                       standard.history),
            RunSummary(compressed.name, compressed.config, compressed.metrics,
                       {**compressed.figures, **extra, "sphere_projection": zoomed}, compressed.history)]


_LAYOUT = """
return {
  figures: Array.from(document.querySelectorAll('figure')).map(f => {
    var img=f.querySelector('img'), cap=f.querySelector('figcaption');
    return {alt: img.alt, natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
            caption: cap ? cap.textContent.trim() : ''};}),
  verdict: document.getElementById('verdict').textContent,
  rows: Array.from(document.querySelectorAll('#metrics tbody tr:not(.group)')).map(r =>
    Array.from(r.cells).slice(4).filter(c => c.hasAttribute('data-v')).length),
};
"""


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="chromium/chromedriver not installed (CI installs them)")
def test_two_run_report_reads_at_a_glance_in_headless_chromium(tmp_path):
    """The first screen answers the question; every figure is captioned and readable."""
    pytest.importorskip("selenium")
    import os

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out = write_report(_browser_runs(tmp_path), tmp_path / "r.html")
    driver = _chromium(tmp_path)
    try:
        driver.get(Path(out).resolve().as_uri())
        page = driver.execute_script(_LAYOUT)
        # The verdict names both reference sets and both sampler families, on the first screen.
        for words in ("reconstructions", "real test set", "paper's sampler", "best fitted sampler",
                      "no spread measured", "RMSE"):
            assert words in page["verdict"], words
        top = driver.execute_script("return document.getElementById('verdict').getBoundingClientRect().top")
        assert 0 <= top < 300
        assert page["rows"] and min(page["rows"]) >= 2  # no comparison row with a single value
        assert len(page["figures"]) == 2 + 2 * 5 + 1 + 1  # plane, curves; 5 shared + samples/sphere
        for f in page["figures"]:
            assert len(f["caption"]) > 20, f["alt"]  # a real caption, not a file name
            assert f["shown"] >= f["natural"] / 2, f  # never shrunk below half its width
        shots = []
        for i, y in enumerate((0, 1200, 3000)):
            driver.execute_script(f"window.scrollTo(0, {y})")
            shots.append(tmp_path / f"report-{i}.png")  # kept as the test's artefacts
            assert driver.save_screenshot(str(shots[-1]))
        if os.environ.get("SPHEREVAE_UPDATE_SCREENSHOT"):  # refresh the README's picture
            docs = Path(__file__).resolve().parents[2] / "docs" / "figures" / "report-screenshot.png"
            docs.write_bytes(shots[0].read_bytes())
        # A click enlarges a figure to the window; Escape closes it.
        img = driver.find_elements(By.CSS_SELECTOR, "figure img")[3]
        driver.execute_script("arguments[0].scrollIntoView()", img)
        img.click()
        assert "big" in img.get_attribute("class")
        assert img.size["width"] > 0.9 * min(1400, driver.execute_script("return innerWidth"))
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        assert "big" not in (img.get_attribute("class") or "")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="chromium/chromedriver not installed (CI installs them)")
def test_report_renders_and_sorts_in_headless_chromium(tmp_path):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By

    out = write_report(_runs(tmp_path), tmp_path / "r.html")
    driver = _chromium(tmp_path)
    try:
        driver.get(Path(out).resolve().as_uri())
        rendered = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert rendered == [True] * 5
        # Sort the metrics table by the compressed run's column (the 6th): each group on its own.
        header = driver.find_elements(By.CSS_SELECTOR, "#metrics thead th")[5]
        before = driver.execute_script(_COLUMN, "metrics", 5)
        header.click()
        asc = driver.execute_script(_COLUMN, "metrics", 5)
        assert asc == [_sorted_with_missing_last(g, False) for g in before]
        header.click()
        desc = driver.execute_script(_COLUMN, "metrics", 5)
        assert desc == [_sorted_with_missing_last(g, True) for g in before]
        assert header.get_attribute("data-order") == "desc"
        # The runs table sorts by a text column too.
        driver.find_elements(By.CSS_SELECTOR, "#runs thead th")[0].click()
        names = driver.execute_script(
            "return Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.cells[0].textContent)")
        assert names == ["compressed", "standard <a>"]
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        with Image.open(shot) as img:
            assert img.size[0] >= 1000 and img.getextrema() != ((255, 255), (255, 255), (255, 255))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()


def test_metric_key_builds_what_describe_reads():
    assert metric_key("fid_recon", backbone="domain", sampler="gaussian_sphere") == "fid_domain_gaussian_sphere_recon"
    assert metric_key("tangent_noise_fid", backbone="inception", scale=1.0) == "tangent_noise_fid_inception_1x"
    assert metric_key("tangent_noise_rmse", scale=0.25) == "tangent_noise_rmse_percent_0.25x"
    assert metric_key("knn_accuracy", k=5) == "knn_accuracy_k5"
    parts = {"backbone": "domain", "sampler": "vmf_mixture", "scale": 0.5, "k": 11, "stat": "collapsed_kl"}
    described = set(METRICS)
    for name, template in KEYS.items():
        needed = {p for p in parts if "{" + p + "}" in template}
        key = metric_key(name, **{p: parts[p] for p in needed})
        info = describe(key)
        if template in described:  # the registry reads back the parts the builder wrote
            assert info is not None and info.template == template
            assert info.sampler == (parts["sampler"] if "sampler" in needed else None)
            assert info.backbone == (parts["backbone"] if "backbone" in needed else None)
        elif name != "collapse":
            assert info is None, key
    with pytest.raises(ValueError, match="needs parts"):
        metric_key("fid_recon", backbone="domain")
    with pytest.raises(ValueError, match="must be one of"):
        metric_key("fid_sometimes")


def test_a_sampler_whose_fit_failed_never_wins_the_verdict(tmp_path):
    # evaluate records NaN for a sampler whose fit failed; NaN compares false with
    # everything, so a NaN met first used to stay the "best" (FID nan in the verdict).
    standard, compressed = _runs(tmp_path)
    failed = {"fid_domain_esag_recon": math.nan,  # NaN first in iteration order
              **COMPRESSED, "fid_domain_vmf_recon": math.nan, "fid_domain_gaussian_recon": 25.0}
    runs = [standard, RunSummary("failed-fits", compressed.config, failed)]
    text = write_report(runs, tmp_path / "r.html").read_text()
    assert "nan" not in text.split("<h2>Runs</h2>")[0].lower()
    page = _Page()
    page.feed(text)
    # The paper's sampler (vMF) failed: no comparison there; the best fitted one is gaussian.
    assert [r[:4] for r in _verdict_rows(page)] == [
        ("reconstructions", "best fitted sampler", "failed-fits (gaussian)", "25 vs 40 (standard <a>, gaussian)"),
        ("real test set", "paper's sampler", "failed-fits (vmf)", "22 vs 70 (standard <a>, prior)"),
        ("real test set", "best fitted sampler", "failed-fits (vmf)", "22 vs 45 (standard <a>, gaussian)")]


def test_report_of_a_path_that_is_no_run_says_so(tmp_path):
    from spherevae.report.html import load_run_summary

    with pytest.raises(FileNotFoundError, match=r"is not a run directory \(no config\.yaml in it\)"):
        load_run_summary(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("data: {name: digits}\n")
    with pytest.raises(FileNotFoundError, match=r"is not an evaluated run: .* \(run `spherevae evaluate` first"):
        load_run_summary(tmp_path / "run")
