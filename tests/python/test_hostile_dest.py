"""guessDir into a DEST that someone else can write into: links, hard links and forged records.

Each case plants on disk what an attacker sharing DEST could (a symlink or hard link under
a name guessDir writes, a forged note of the copy in flight, forged manifest records, a
racer swapping each new copy for a symlink) and checks that nothing outside DEST changes
(neither bytes nor modification time), nothing planted is removed, and the run either goes
on with one line or stops with one line naming the file and what to do.

Run as a script (`python test_hostile_dest.py race DEST VICTIM...`) it is the racer
itself, for the wrapper's tests (tests/bats/hostile_dest.bats).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

MANIFEST_NAME, NOTE_NAME = "guesses.jsonl", ".guessDir-copy-in-flight.json"
IN_CREATE = 0x100


def race(dest: Path, victims: list[Path]) -> None:
    """Swap each file created in `dest` (not the manifest or the note) for a symlink to a victim,
    as soon as inotify reports it; print one line per swap. Runs until killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    watch = libc.inotify_init1(0)
    if watch < 0 or libc.inotify_add_watch(watch, os.fsencode(dest), IN_CREATE) < 0:
        raise SystemExit(f"inotify: {os.strerror(ctypes.get_errno())}")
    print("ready", flush=True)
    swaps = 0
    while True:
        data = os.read(watch, 1 << 16)
        at = 0
        while at < len(data):
            size = int.from_bytes(data[at + 12:at + 16], sys.byteorder)
            name = data[at + 16:at + 16 + size].rstrip(b"\0").decode()
            at += 16 + size
            if name in (MANIFEST_NAME, NOTE_NAME):
                continue
            try:
                os.unlink(dest / name)
                os.symlink(victims[swaps % len(victims)], dest / name)
            except OSError:
                continue
            swaps += 1
            print(f"swapped {name}", flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["race"]:
    race(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    raise SystemExit(0)

from conftest import SIGN_DIGITS, SUPERHEROES  # noqa: E402

from tensorguess.score.predict import Classifier  # noqa: E402
from tensorguess.sort import copy_in_flight  # noqa: E402
from tensorguess.sort.folder import MANIFEST, SortError, sort  # noqa: E402

assert (MANIFEST, copy_in_flight.IN_FLIGHT) == (MANIFEST_NAME, NOTE_NAME)
PAST = 1_000_000_000  # the victims' modification time: any write or copystat changes it


def make_victims(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    victims = []
    for i in range(count):
        victim = folder / f"victim-{i}.txt"
        victim.write_bytes(b"someone else's file\nwithout a final newline")
        os.utime(victim, (PAST, PAST))
        victims.append(victim)
    return victims


def untouched(victims: list[Path]) -> bool:
    return all(v.read_bytes() == b"someone else's file\nwithout a final newline"
               and os.stat(v).st_mtime == PAST for v in victims)


@pytest.fixture(scope="module")
def classifier(trained):
    base, _, _ = trained
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as loaded:
        yield loaded


@pytest.fixture
def photos(tmp_path) -> Path:
    source = tmp_path / "photos"
    source.mkdir()
    for label in ("elsa", "darth_vader"):
        for photo in sorted((SUPERHEROES / label).iterdir())[:2]:
            shutil.copy(photo, source / f"{label}-{photo.name}")
    return source


def records(dest: Path) -> list[dict]:
    return [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]


def each_photo_copied_once(source: Path, dest: Path) -> list[dict]:
    copies = [r for r in records(dest) if "copy" in r]
    assert sorted(r["source"] for r in copies) == sorted(p.name for p in source.iterdir())
    for record in copies:
        assert (dest / record["copy"]).read_bytes() == (source / record["source"]).read_bytes()
    return copies


def test_a_racer_swapping_each_new_copy_for_a_symlink_sends_nothing_outside_dest(classifier, tmp_path):
    source = tmp_path / "photos"
    source.mkdir()
    for digit in ("3", "4"):
        for photo in sorted((SIGN_DIGITS / digit).iterdir())[:40]:
            shutil.copy(photo, source / f"{digit}-{photo.name}")
    victims = make_victims(tmp_path / "outside", 5)
    dest = tmp_path / "dest"
    dest.mkdir()
    racer = subprocess.Popen([sys.executable, __file__, "race", str(dest), *map(str, victims)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert racer.stdout.readline() == "ready\n"
        summary = sort(classifier, source, dest, warn=lambda line: None)
    finally:
        racer.kill()
    swaps = racer.communicate()[0].splitlines()
    assert summary.copied == 80
    assert len(swaps) >= 40, "the racer won too few races to show anything"
    assert untouched(victims), "a copy was written through a link swapped in after its claim"
    assert all(v.is_symlink() for v in dest.iterdir() if f"swapped {v.name}" in swaps)


LINKS = ["symlink", "dangling symlink", "hard link", "symlink to /dev/zero"]


@pytest.mark.parametrize("name", [NOTE_NAME, MANIFEST_NAME])
@pytest.mark.parametrize("link", LINKS)
def test_a_link_planted_as_the_note_or_manifest_stops_the_run_untouched(classifier, photos, tmp_path,
                                                                        name, link):
    victim, = make_victims(tmp_path / "outside", 1)
    dest = tmp_path / "dest"
    dest.mkdir()
    planted = dest / name
    if link == "hard link":
        os.link(victim, planted)
    else:
        planted.symlink_to({"symlink": victim, "dangling symlink": tmp_path / "outside" / "new",
                            "symlink to /dev/zero": Path("/dev/zero")}[link])
    with pytest.raises(SortError) as refused:
        sort(classifier, photos, dest, warn=lambda line: None)
    message = str(refused.value)
    assert "\n" not in message and str(planted) in message and "remove or rename it" in message
    assert ("symbolic link" in message) == (link != "hard link")
    assert untouched([victim])
    assert not (tmp_path / "outside" / "new").exists()
    assert planted.is_symlink() == (link != "hard link") and os.path.lexists(planted), "never removed"
    assert sorted(p.name for p in dest.iterdir()) == [name], "nothing copied or recorded"


def test_a_note_too_big_to_be_one_is_refused_without_being_read(classifier, photos, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(dest / NOTE_NAME, "wb") as huge:
        huge.truncate(8 << 30)  # 8 GB, sparse: reading it whole would take the memory
    with pytest.raises(SortError, match=r"8589934592 bytes, more than guessDir ever writes there"):
        sort(classifier, photos, dest, warn=lambda line: None)
    assert os.stat(dest / NOTE_NAME).st_size == 8 << 30


@pytest.fixture
def forged_note(classifier, photos, tmp_path):
    """A note as a stopped run would have written it for the first photo, to be forged."""
    reference = tmp_path / "reference"
    sort(classifier, photos, reference, warn=lambda line: None)
    record = next(r for r in records(reference) if "copy" in r)
    assert record["root"] == str(photos.resolve()) and record["model"] == classifier.digest
    return record


FORGERIES = {
    "no label": lambda r: {k: v for k, v in r.items() if k != "label"},
    "a label the classifier has not": lambda r: {**r, "label": "cat", "copy": "cat--12345.jpg"},
    "the manifest for the copy": lambda r: {**r, "copy": MANIFEST_NAME},
    "the note for the copy": lambda r: {**r, "copy": NOTE_NAME},
    "a name guessDir never gives": lambda r: {**r, "copy": "holiday.jpg"},
    "a score that is a string": lambda r: {**r, "score": "0.9"},
    "digits that are not the score's": lambda r: {**r, "copy": r["copy"].split("--")[0] + "--00000.jpg"},
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_note_is_ignored_with_one_line_and_writes_nothing_into_what_it_names(
        classifier, photos, tmp_path, forged_note, forgery):
    dest = tmp_path / "dest"
    dest.mkdir()
    record = FORGERIES[forgery](forged_note)
    named = dest / record.get("copy", "none")
    named.write_bytes(b"")  # empty: what a stopped run's claim leaves, so old code filled it
    (dest / NOTE_NAME).write_text(json.dumps(record))
    lines: list[str] = []
    summary = sort(classifier, photos, dest, warn=lines.append)
    ignored = [line for line in lines if NOTE_NAME in line]
    assert len(ignored) == 1 and ignored[0].startswith(f"tensor-guess: ignoring {dest / NOTE_NAME}: ")
    assert summary.copied == 4
    if named.name not in (MANIFEST_NAME, NOTE_NAME):  # the note is removed at the end, as always
        assert named.read_bytes() == b"", "photo bytes written into the file a forged note names"
    assert all(r["label"] != "cat" for r in records(dest))
    copies = each_photo_copied_once(photos, dest)
    assert named.name not in {r["copy"] for r in copies}


def test_a_note_naming_a_hard_link_to_a_file_outside_dest_leaves_that_file_alone(
        classifier, photos, tmp_path, forged_note):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"")
    os.link(outside, dest / forged_note["copy"])
    (dest / NOTE_NAME).write_text(json.dumps(forged_note))
    summary = sort(classifier, photos, dest, warn=lambda line: None)
    assert outside.read_bytes() == b""
    assert summary.copied == 4
    assert forged_note["copy"] not in {r["copy"] for r in each_photo_copied_once(photos, dest)}


def test_manifest_records_naming_files_out_of_dest_do_not_count_as_sorted(classifier, photos, tmp_path):
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "x.jpg").write_bytes(b"x")
    names = sorted(p.name for p in photos.iterdir())
    where = {"root": str(photos.resolve()), "model": classifier.digest, "label": "elsa", "score": 0.9}
    forged = [{"source": names[0], "copy": "/etc/hostname", **where},
              {"source": names[1], "copy": "../../../../../../etc/hostname", **where},
              {"source": names[2], "copy": "sub/x.jpg", **where}]
    (dest / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in forged))
    lines: list[str] = []
    summary = sort(classifier, photos, dest, warn=lines.append)
    assert (summary.copied, summary.already_sorted) == (4, 0)
    assert [line for line in lines if "ignoring" in line] == [
        f"tensor-guess: ignoring 3 record(s) of {dest / MANIFEST} whose copy is not a file name in DEST "
        "(an absolute path, '..' or a folder): guessDir never writes those, so the photos they name are "
        "sorted again"]
    copies = [r for r in records(dest)[3:] if "copy" in r]
    assert sorted(r["source"] for r in copies) == names


def test_a_socket_in_src_is_one_line_and_never_opened(classifier, photos, tmp_path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(photos / "listening.jpg"))
    try:
        lines: list[str] = []
        summary = sort(classifier, photos, tmp_path / "dest", warn=lines.append)
    finally:
        server.close()
    assert lines == [f"tensor-guess: skipping {photos.resolve() / 'listening.jpg'}: a socket, not a regular "
                     "file; only photos in regular files are sorted"]
    assert (summary.copied, summary.unreadable) == (4, 1)
