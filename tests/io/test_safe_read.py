"""The read gate for run directories (spherevae.io.safe_read): what it lets through and
what it refuses, on real files, links and FIFOs."""

from __future__ import annotations

import os

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spherevae.io.errors import UserError
from spherevae.io.safe_read import (
    MAX_YAML_DEPTH,
    check_run_file,
    check_run_output,
    read_run_bytes,
    read_run_json,
    safe_yaml_load,
)


def test_links_inside_the_run_pass_and_links_out_of_it_are_refused(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "a.json").write_text("{}")
    (run / "eval" / "inside.json").symlink_to(run / "a.json")
    assert check_run_file(run, run / "eval" / "inside.json") == (run / "a.json").resolve()
    (tmp_path / "secret").write_text("{}")
    (run / "out.json").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match=r"out.json is a link to .*secret, outside the run directory"):
        read_run_bytes(run, run / "out.json")
    # A directory on the way that leaves the run is the same as a link of the file itself.
    (run / "linked").symlink_to(tmp_path)
    with pytest.raises(UserError, match="outside the run directory"):
        check_run_file(run, run / "linked" / "secret")
    with pytest.raises(FileNotFoundError):
        check_run_file(run, run / "missing.json")


def test_fifos_and_directories_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(UserError, match="not a regular file"):
        read_run_bytes(tmp_path, tmp_path / "fifo.json")  # would block for ever if opened
    (tmp_path / "d.json").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        read_run_json(tmp_path, tmp_path / "d.json")


@given(size=st.integers(0, 64), limit=st.integers(0, 64))
@settings(max_examples=40, deadline=None)
def test_the_size_limit_is_exact(tmp_path_factory, size, limit):
    path = tmp_path_factory.mktemp("s") / "f.bin"
    path.write_bytes(b"x" * size)
    if size <= limit:
        assert read_run_bytes(path.parent, path, limit) == b"x" * size
    else:
        with pytest.raises(UserError, match=f"larger than {limit} bytes"):
            read_run_bytes(path.parent, path, limit)


def test_json_must_have_the_expected_top_level_type(tmp_path):
    path = tmp_path / "fp.json"
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="holds a JSON list, not a JSON object"):
        read_run_json(tmp_path, path)
    assert read_run_json(tmp_path, path, expect=list) == [1, 2]
    path.write_text("{")
    with pytest.raises(UserError, match=r"fp\.json is not valid JSON"):
        read_run_json(tmp_path, path)


@given(depth=st.integers(1, MAX_YAML_DEPTH + 8), flow=st.booleans())
@settings(max_examples=40, deadline=None)
def test_yaml_nesting_is_bounded_and_otherwise_parsed_like_safe_load(depth, flow):
    if flow:
        text = "[" * depth + "1" + "]" * depth
    else:  # block style: one mapping per line, each indented under the last
        text = "".join(f"{'  ' * i}k{i}:\n" for i in range(depth - 1)) + "  " * (depth - 1) + "k: 1\n"
    if depth <= MAX_YAML_DEPTH:
        assert safe_yaml_load(text, "c.yaml") == yaml.safe_load(text)  # the reference parser
    else:
        line = 1 if flow else MAX_YAML_DEPTH + 1  # where the level past the bound opens
        with pytest.raises(UserError, match=f"c.yaml, line {line}: nested more than {MAX_YAML_DEPTH} levels"):
            safe_yaml_load(text, "c.yaml")


def test_yaml_anchors_and_aliases_are_refused(tmp_path):
    for text, line in (("a: &x 1\nb: *x\n", 1), ("a: 1\nb: &y [1]\n", 2), ("a: [1]\nb: *z\n", 2)):
        with pytest.raises(UserError, match=f"c.yaml, line {line}: YAML anchors and aliases"):
            safe_yaml_load(text, "c.yaml")


def test_an_output_directory_linked_out_of_the_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert check_run_output(run, run / "eval") == run / "eval"  # not there yet: fine
    (run / "eval").symlink_to(tmp_path)
    with pytest.raises(UserError, match="writes nothing outside a run"):
        check_run_output(run, run / "eval")
    (run / "eval").unlink()
    (run / "eval").write_text("")
    with pytest.raises(UserError, match="eval is not a directory"):
        check_run_output(run, run / "eval")
