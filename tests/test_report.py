"""The HTML report: parsed statically, and loaded in a real headless Chromium."""

import base64
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from spherevae import plots
from spherevae.report import RunSummary, load_run_summary, write_report


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def _runs(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = [torch.rand(4, 1, 8, 8, generator=g) for _ in range(3)]
    fig = plots.reconstruction_figure(*x)
    png = plots.save_figure(fig, tmp_path / "samples.png")
    return [
        RunSummary("standard <a>", {"objective": {"name": "standard"}}, {"fid_domain_recon": 12.5, "rmse_percent": 9.1}, {"samples": png}),
        RunSummary("compressed", {"objective": {"name": "compressed"}}, {"fid_domain_recon": 8.25}, {"samples": png}),
    ]


def test_report_is_self_contained_and_escaped(tmp_path):
    out = write_report(_runs(tmp_path), tmp_path / "r.html")
    text = out.read_text()
    assert "standard &lt;a&gt;" in text and "<a>" not in text
    assert "http" not in text and "<script" not in text
    parser = _Imgs()
    parser.feed(text)
    assert len(parser.srcs) == 2
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert write_report(_runs(tmp_path), tmp_path / "r2.html").read_text() == text  # deterministic


def test_load_run_summary_names_the_missing_file(tmp_path):
    (tmp_path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(FileNotFoundError, match=r"metrics.json is missing \(run `spherevae evaluate` first\)"):
        load_run_summary(tmp_path)


@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="chromium/chromedriver not installed (CI installs them)")
def test_report_renders_in_headless_chromium(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = write_report(_runs(tmp_path), tmp_path / "r.html")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get(Path(out).resolve().as_uri())
        rendered = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert rendered == [True, True]
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('td')).map(td => td.textContent)")
        assert "fid_domain_recon" in cells and "12.5" in cells and "8.25" in cells
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
