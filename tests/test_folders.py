"""Crash-safe result folders and files (`synthpm.folders`); kill -9 tests in test_kill.py."""

from __future__ import annotations

import os

import pytest

from synthpm.data.errors import ConfigError
from synthpm.folders import MARK, atomic_file, atomic_folder, write_atomic


def test_a_folder_appears_whole_and_replaces_the_earlier_one(tmp_path):
    out = tmp_path / "run"
    with atomic_folder(out, "metrics.json") as partial:
        (partial / "metrics.json").write_text("1")
        assert not out.exists()  # nothing is visible before the end
    with atomic_folder(out, "metrics.json") as partial:
        (partial / "metrics.json").write_text("2")
    assert (out / "metrics.json").read_text() == "2" and (out / MARK).exists()
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no partial or old folder left


def test_a_failed_write_leaves_the_earlier_folder_and_no_partial(tmp_path):
    out = tmp_path / "run"
    with atomic_folder(out, "metrics.json") as partial:
        (partial / "metrics.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(out, "metrics.json") as partial:
        (partial / "metrics.json").write_text("2")
        raise RuntimeError("killed")
    assert (out / "metrics.json").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_leftovers_of_a_killed_writer_are_cleared_by_the_next(tmp_path):
    out = tmp_path / "run"
    (tmp_path / ".run.partial-99").mkdir()
    (tmp_path / ".run.partial-99" / "half.csv").write_text("x")
    with atomic_folder(out, "metrics.json") as partial:
        (partial / "metrics.json").write_text("1")
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_only_a_result_folder_is_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for out in (mine, tmp_path, ".", "", tmp_path.parent):
        with (
            pytest.raises(ConfigError, match="not a synthpm result|working folder"),
            atomic_folder(out, "metrics.json"),
        ):
            pass
    assert (mine / "thesis.tex").read_text() == "years of work"
    old = tmp_path / "old_run"  # written before the mark existed: its signature file
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    with atomic_folder(old, "metrics.json") as partial:
        (partial / "metrics.json").write_text("new")
    assert (old / "metrics.json").read_text() == "new"


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = write_atomic(tmp_path / "a" / "table.csv", "x\n1\n")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("x\n2")
        raise RuntimeError("killed")
    assert path.read_text() == "x\n1\n" and os.listdir(path.parent) == ["table.csv"]
    with pytest.raises(ConfigError, match="is a folder"):
        write_atomic(tmp_path, "x")
