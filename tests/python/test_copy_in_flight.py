"""guessDir killed between claiming a copy's name and recording it: the rerun finishes that copy.

Each case builds on disk exactly what a kill -9 leaves at one moment of copying the
last photo (the note of the copy in flight, and its file as it was then), reruns
guessDir, and checks what the issue asks: every photo copied once, byte-identical,
recorded once, and nothing of the user's touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SUPERHEROES

from tensorguess.score.predict import Classifier
from tensorguess.sort import copy_in_flight
from tensorguess.sort.folder import MANIFEST, sort


@pytest.fixture(scope="module")
def sorted_once(trained, tmp_path_factory):
    """Four photos and a whole, uninterrupted sort of them: (classifier files, source, records)."""
    base, _, _ = trained
    source = tmp_path_factory.mktemp("photos")
    for label in ("elsa", "darth_vader"):
        for photo in sorted((SUPERHEROES / label).iterdir())[:2]:
            shutil.copy(photo, source / f"{label}-{photo.name}")
    dest = tmp_path_factory.mktemp("reference")
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        sort(classifier, source, dest, warn=lambda line: None)
    records = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    assert not (dest / copy_in_flight.IN_FLIGHT).exists(), "a whole run leaves no note"
    return base, source, records


def killed_state(source: Path, records: list[dict], dest: Path, last_copy: bytes | None, recorded: bool):
    """DEST as a kill left it while copying the last photo: the others copied and recorded, the
    note of the last written, its file holding `last_copy` (None: not created yet)."""
    dest.mkdir()
    *before, last = records
    lines = before + ([last] if recorded else [])
    (dest / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in lines))
    for record in before:
        shutil.copy(source / record["source"], dest / record["copy"])
    copy_in_flight.note(dest, last)
    if last_copy is not None:
        (dest / last["copy"]).write_bytes(last_copy)
    return last


def rerun(base: Path, source: Path, dest: Path) -> list[str]:
    lines: list[str] = []
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        summary = sort(classifier, source, dest, warn=lines.append)
    photos = len(list(source.iterdir()))
    assert summary.copied + summary.already_sorted == photos, "each photo counted once"
    return lines


def check_each_photo_copied_once(source: Path, dest: Path, users: set[str] = frozenset()) -> list[dict]:
    records = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    copies = [r for r in records if "copy" in r]
    assert sorted(r["source"] for r in copies) == sorted(p.name for p in source.iterdir()), "once each"
    on_disk = sorted(p.name for p in dest.iterdir() if p.name != MANIFEST and p.name not in users)
    assert on_disk == sorted(r["copy"] for r in copies), "a copy without its record, or the note left"
    for record in copies:
        assert (dest / record["copy"]).read_bytes() == (source / record["source"]).read_bytes()
    return copies


MOMENTS = ["before the claim", "claimed, empty", "half copied", "copied, unrecorded"]


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_copy_cut_short_by_a_kill_is_finished_under_its_own_name(sorted_once, tmp_path, moment):
    base, source, records = sorted_once
    photo = (source / records[-1]["source"]).read_bytes()
    content = {"before the claim": None, "claimed, empty": b"", "half copied": photo[:len(photo) // 2],
               "copied, unrecorded": photo}[moment]
    last = killed_state(source, records, tmp_path / "dest", content, recorded=False)
    lines = rerun(base, source, tmp_path / "dest")
    copies = check_each_photo_copied_once(source, tmp_path / "dest")
    assert {r["source"]: r["copy"] for r in copies}[last["source"]] == last["copy"], "its own name"
    finished = any("finished copying" in line and last["copy"] in line for line in lines)
    assert finished == (content is not None), lines


def test_a_kill_after_the_record_leaves_nothing_to_finish(sorted_once, tmp_path):
    base, source, records = sorted_once
    whole = (source / records[-1]["source"]).read_bytes()
    killed_state(source, records, tmp_path / "dest", whole, recorded=True)
    lines = rerun(base, source, tmp_path / "dest")
    check_each_photo_copied_once(source, tmp_path / "dest")
    assert not any("finished copying" in line for line in lines)


def test_a_file_under_the_noted_name_that_is_not_the_photo_is_left_alone(sorted_once, tmp_path):
    """Someone else's file under that name (DEST is theirs too): never touched, the photo copied anew."""
    base, source, records = sorted_once
    last = killed_state(source, records, tmp_path / "dest", b"the user's own file", recorded=False)
    rerun(base, source, tmp_path / "dest")
    assert (tmp_path / "dest" / last["copy"]).read_bytes() == b"the user's own file"
    copies = check_each_photo_copied_once(source, tmp_path / "dest", users={last["copy"]})
    assert {r["source"]: r["copy"] for r in copies}[last["source"]] != last["copy"]


@pytest.mark.parametrize("note", ["torn", "not a record", "out of SRC", "a path for a name"])
def test_a_torn_or_foreign_note_is_read_as_nothing_in_flight(sorted_once, tmp_path, note):
    base, source, records = sorted_once
    last = killed_state(source, records, tmp_path / "dest", None, recorded=False)
    outside = tmp_path / "outside.jpg"
    shutil.copy(source / last["source"], outside)
    (tmp_path / "dest" / "sub").mkdir()
    (tmp_path / "dest" / "sub" / "x.jpg").write_bytes(b"")
    text = {"torn": json.dumps(last)[:40], "not a record": "[1, 2]",
            "out of SRC": json.dumps({**last, "source": "../outside.jpg"}),
            "a path for a name": json.dumps({**last, "copy": "sub/x.jpg"})}[note]
    (tmp_path / "dest" / copy_in_flight.IN_FLIGHT).write_text(text)
    lines = rerun(base, source, tmp_path / "dest")
    assert not any("finished copying" in line for line in lines)
    assert (tmp_path / "dest" / "sub" / "x.jpg").read_bytes() == b""
    shutil.rmtree(tmp_path / "dest" / "sub")
    check_each_photo_copied_once(source, tmp_path / "dest")


def test_a_note_is_written_over_the_one_before_never_truncated(tmp_path, monkeypatch):
    """Truncating the note to nothing made ext4 write it to disk on close (auto_da_alloc): 15 ms a
    photo, the largest cost of an int8 guessDir around the network (docs/benchmarks.md)."""
    import os

    long = {"source": "a" * 300, "copy": "x"}
    short = {"source": "b", "copy": "y"}
    copy_in_flight.note(tmp_path, long)

    def refused(*args):
        raise AssertionError("the note was truncated")

    monkeypatch.setattr(os, "ftruncate", refused)
    copy_in_flight.note(tmp_path, short)
    assert json.loads((tmp_path / copy_in_flight.IN_FLIGHT).read_bytes()) == short
