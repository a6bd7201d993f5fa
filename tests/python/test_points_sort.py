"""guessDir on a points model, trained here on 40 hand photos: each photo of SRC copied whole into
DEST, drawn into DEST/drawn, and all the answers in DEST/keypoints.json, COCO keypoints that the
train's reader reads back; resumable after a kill and safe in a shared DEST, as the classes' sort.

The kill cases build on disk what a kill -9 leaves at one moment (as test_copy_in_flight.py does
for classes), then rerun and check: every photo copied once, byte-identical, recorded once, in
keypoints.json once, and nothing of the user's touched.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_points_guess import hand_photos
from test_train_points import SIGN_DIGITS, config, hands_subset

from tensorguess import cli
from tensorguess.data.keypoints import read_keypoints
from tensorguess.points_guessdir import sort
from tensorguess.report.drawings_folder import is_drawing
from tensorguess.score.points import open_points_model
from tensorguess.sort import copy_in_flight
from tensorguess.sort.folder import SortError
from tensorguess.sort.keypoints_file import KEYPOINTS_FILE
from tensorguess.sort.names import MANIFEST
from tensorguess.sort.points_folder import DRAWN


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("hands_model")
    hands_subset(folder / "hands.json", 40)
    train(config(folder, folder / "hands.json", SIGN_DIGITS, point_epochs=2, augment=0),
          say=lambda line: None, warn=lambda line: None)
    return folder


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Three hands the model never saw, one in a subfolder, and a file that is no photo."""
    folder = tmp_path_factory.mktemp("to_sort")
    (folder / "more").mkdir()
    photos = [path for path, _ in hand_photos()]
    for number, photo in enumerate(photos):
        shutil.copy(photo, (folder / "more" if number == 2 else folder) / photo.name)
    (folder / "notes.txt").write_text("not a photo\n")
    return folder


@pytest.fixture(scope="module")
def sorted_once(model, source, tmp_path_factory):
    """One whole run through the CLI: (DEST, its printed lines, the manifest's records)."""
    dest = tmp_path_factory.mktemp("sorted") / "dest"
    code = cli.main(["sort", str(model), str(source), str(dest)])
    assert code == 0
    records = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    return dest, records


def copies(records: list[dict]) -> list[dict]:
    return [record for record in records if "copy" in record]


def rerun(model, source, dest) -> list[str]:
    lines: list[str] = []
    with open_points_model(model) as scorer:
        sort(scorer, source, dest, warn=lines.append)
    return lines


def check_whole(source, dest, records: list[dict]) -> dict:
    """Every photo once in DEST, byte-identical, drawn, recorded once and in keypoints.json once."""
    photos = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.JPG"))
    assert sorted(record["source"] for record in copies(records)) == photos
    for record in copies(records):
        assert (dest / record["copy"]).read_bytes() == (source / record["source"]).read_bytes()
        assert is_drawing(dest / DRAWN / f"{record['copy']}.png")
    document = json.loads((dest / KEYPOINTS_FILE).read_text())
    assert sorted(image["file_name"] for image in document["images"]) == sorted(
        record["copy"] for record in copies(records))
    assert sorted(p.name for p in (dest / DRAWN).iterdir()) == sorted(
        f"{record['copy']}.png" for record in copies(records)), "one drawing a copy"
    leftover = {p.name for p in dest.iterdir()} - {r["copy"] for r in copies(records)}
    assert leftover == {MANIFEST, KEYPOINTS_FILE, DRAWN}, leftover
    return document


def test_each_photo_is_copied_drawn_and_in_keypoints_json_which_train_reads(model, source, sorted_once,
                                                                            capsys):
    dest, records = sorted_once
    document = check_whole(source, dest, records)
    assert [r["source"] for r in records if "error" in r] == ["notes.txt"]
    with open_points_model(model) as scorer:
        names, bones = scorer.names, scorer.skeleton.checked()
        answers = {r.path.relative_to(source).as_posix(): r
                   for r in scorer.score_files(sorted(source.rglob("*.JPG")))}
    for record in copies(records):
        score = np.mean(answers[record["source"]].confidence)
        assert record["copy"] == f"{int(score * 1e5):05d}--{record['source'].rsplit('/', 1)[-1]}"
    assert document["categories"][0]["keypoints"] == names
    assert document["categories"][0]["skeleton"] == [[a + 1, b + 1] for a, b in bones]
    # The reader train.sh uses: every photo found in DEST, the points where the model put them.
    read = read_keypoints(dest / KEYPOINTS_FILE, warn=pytest.fail, say=lambda line: None)
    assert list(read.names) == names and len(read.instances) == 3
    by_copy = {r["copy"]: r["source"] for r in copies(records)}
    scored = {image["id"]: image["file_name"] for image in document["images"]}
    for annotation in document["annotations"]:
        answer = answers[by_copy[scored[annotation["image_id"]]]]
        triples = np.array(annotation["keypoints"]).reshape(-1, 3)
        np.testing.assert_allclose(triples[:, :2], answer.points, atol=1e-4)
        assert (triples[:, 2] == 2).all()
        np.testing.assert_allclose(annotation["keypoint_scores"], answer.confidence, atol=1e-6)
        assert annotation["score"] == pytest.approx(float(np.mean(answer.confidence)), abs=1e-6)
    for instance in read.instances:
        assert instance.path.parent == dest


def test_a_rerun_skips_what_is_sorted_and_keeps_a_corrected_keypoints_json(model, source, sorted_once,
                                                                          tmp_path):
    dest = tmp_path / "dest"
    shutil.copytree(sorted_once[0], dest)
    document = json.loads((dest / KEYPOINTS_FILE).read_text())
    document["annotations"][0]["keypoints"][:2] = [1.5, 2.5]  # a person's correction
    (dest / KEYPOINTS_FILE).write_text(json.dumps(document))
    lines = rerun(model, source, dest)
    assert not any("finished copying" in line for line in lines)
    records = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    assert len(copies(records)) == 3, "nothing copied twice"
    after = json.loads((dest / KEYPOINTS_FILE).read_text())
    assert after == document


@pytest.mark.parametrize("moment", ["claimed", "half", "whole", "recorded"])
def test_a_kill_mid_copy_is_finished_by_the_rerun_without_redoing_or_losing(model, source, sorted_once,
                                                                             tmp_path, moment):
    """A kill while the last photo is copied: its name claimed (empty), half of it, all of it, or
    its record written (drawn already, with the others, at the last two); in every case
    keypoints.json not yet written (it comes last)."""
    reference, records = sorted_once
    dest = tmp_path / "dest"
    dest.mkdir()
    *before, last = [r for r in records if "copy" in r]
    (dest / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in
                                         before + ([last] if moment == "recorded" else [])))
    (dest / DRAWN).mkdir()
    for record in before + ([last] if moment in ("whole", "recorded") else []):
        shutil.copy(reference / DRAWN / f"{record['copy']}.png", dest / DRAWN)
    for record in before:
        shutil.copy(source / record["source"], dest / record["copy"])
    copy_in_flight.note(dest, last)
    photo = (source / last["source"]).read_bytes()
    (dest / last["copy"]).write_bytes({"claimed": b"", "half": photo[:len(photo) // 2]}.get(moment, photo))
    lines = rerun(model, source, dest)
    if moment != "recorded":
        assert any("finished copying" in line for line in lines), lines
    after = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    check_whole(source, dest, after)
    assert [r["copy"] for r in copies(after)] == [r["copy"] for r in copies(records)]
    assert not (dest / copy_in_flight.IN_FLIGHT).exists()


def test_a_users_file_under_a_copy_s_or_a_drawing_s_name_is_kept(model, source, sorted_once, tmp_path):
    _, records = sorted_once
    dest = tmp_path / "dest"
    (dest / DRAWN).mkdir(parents=True)
    first = copies(records)[0]
    (dest / first["copy"]).write_text("mine")
    (dest / DRAWN / f"{first['copy']}.png").write_text("mine too")
    rerun(model, source, dest)
    assert (dest / first["copy"]).read_text() == "mine"
    assert (dest / DRAWN / f"{first['copy']}.png").read_text() == "mine too"
    after = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    moved = next(r for r in copies(after) if r["source"] == first["source"])
    assert moved["copy"] == first["copy"].replace(".JPG", " (2).JPG")
    assert (dest / moved["copy"]).read_bytes() == (source / first["source"]).read_bytes()


@pytest.mark.parametrize("planted", ["keypoints link", "foreign keypoints", "drawn link"])
def test_what_is_planted_in_dest_stops_the_run_untouched(model, source, tmp_path, planted):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "theirs.json").write_text('{"mine": 1}')
    if planted == "keypoints link":
        (dest / KEYPOINTS_FILE).symlink_to(outside / "theirs.json")
    elif planted == "foreign keypoints":
        shutil.copy(outside / "theirs.json", dest / KEYPOINTS_FILE)
    else:
        (dest / DRAWN).symlink_to(outside)
    with open_points_model(model) as scorer, pytest.raises(SortError) as error:
        sort(scorer, source, dest, warn=lambda line: None)
    assert str(dest) in str(error.value) and "\n" not in str(error.value)
    assert [p.name for p in outside.iterdir()] == ["theirs.json"]
    assert (outside / "theirs.json").read_text() == '{"mine": 1}'
    assert not any(dest.glob("*.JPG"))
