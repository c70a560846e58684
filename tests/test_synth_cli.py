"""``prism-ray data synth``: bad options are one line before anything is written, and the
output folder appears whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import prism_ray.data.synthetic as synthetic
from prism_ray.cli import main
from prism_ray.data import synthesize


@pytest.mark.parametrize("option, value, allowed", [
    ("--image-size", "0", "greater than or equal to 16"),
    ("--image-size", "-5", "greater than or equal to 16"),
    ("--image-size", "100000", "less than or equal to 1024"),
    ("--public-perception-error", "1.5", "less than or equal to 1"),
    ("--public-reasoning-error", "-0.1", "greater than or equal to 0"),
    ("--public-reasoning-error", "nan", "finite number"),
])
def test_bad_option_is_one_line_and_writes_nothing(tmp_path, capsys, option, value, allowed):
    out = tmp_path / "data"
    assert main(["data", "synth", "--out", str(out), "--size", "tiny", option, value]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"prism-ray: data synth: {option} ") and allowed in err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_holding_another_dataset_is_one_line(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["data", "synth", "--out", str(out), "--size", "tiny"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(out) in err and "overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _fail_at_the_warmup(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_warmup", broken)


def test_a_failed_run_leaves_no_folder(tmp_path, monkeypatch):
    _fail_at_the_warmup(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize(tmp_path / "data", size="tiny")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_an_existing_dataset_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "data"
    synthesize(out, seed=0, size="tiny")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "notes.txt").write_text("mine")
    _fail_at_the_warmup(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize(out, seed=1, size="tiny", overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {**before, Path("notes.txt"): b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_replaces_the_products_and_keeps_other_files(tmp_path):
    out = tmp_path / "data"
    synthesize(out, seed=0, size="tiny")
    (out / "notes.txt").write_text("mine")
    synthesize(out, seed=1, size="tiny", overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_cli_writes_into_an_empty_existing_folder(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    assert main(["data", "synth", "--out", str(out), "--size", "tiny", "--image-size", "32"]) == 0
    assert json.loads((out / "manifest.json").read_text())["image_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
