"""guess on a points model, trained here on 80 hand photos: its text lines and its JSON give the
scorer's box and points in the photo's pixels, and --draw writes each photo with them drawn, never
over a file it did not draw."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import SIGN_DIGITS
from PIL import Image
from test_train_points import HANDS, config, hands_subset

from tensorguess import cli, model_dir
from tensorguess.data.images import read_image
from tensorguess.report.point_drawing import BOX, PREDICTED
from tensorguess.score.points import open_points_model

NUMBER = r"-?\d+\.\d"


def hand_photos() -> list:
    """Hands the model never saw (the shared file's photos after its first 80), with their labels."""
    coco = json.loads(HANDS.read_text())
    images = sorted(coco["images"], key=lambda image: image["file_name"])[100:103]
    labels = {a["image_id"]: np.array(a["keypoints"], float).reshape(-1, 3) for a in coco["annotations"]}
    return [(SIGN_DIGITS / image["file_name"], labels[image["id"]]) for image in images]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("hands_model")
    hands_subset(folder / "hands.json", 80)
    train(config(folder, folder / "hands.json", SIGN_DIGITS, point_epochs=3), say=lambda line: None,
          warn=lambda line: None)
    return folder


@pytest.fixture(scope="module")
def answers(model):
    """The scorer's own answers for the three photos: what guess must print."""
    with open_points_model(model) as scorer:
        return scorer.names, list(scorer.skeleton.checked()), list(scorer.score_files([p for p, _ in
                                                                                        hand_photos()]))


def guess(capsys, *arguments) -> tuple[int, str, str]:
    code = cli.main(["guess", *map(str, arguments)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_text_gives_the_box_then_name_x_y_score_a_point(model, answers, capsys):
    names, _, results = answers
    photos = [path for path, _ in hand_photos()][:2]
    code, out, err = guess(capsys, model, *photos)
    assert code == 0 and err == ""
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    for photo, block, result in zip(photos, blocks, results, strict=False):
        head, box, *points = block.splitlines()
        assert head == f"==> {photo} <=="
        x0, y0, x1, y1 = result.box
        scores = result.confidence
        assert box == f"box {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f} {scores.mean():.2f}"
        assert [line.rsplit(" ", 3)[0] for line in points] == names and len(names) == 21
        for line, (x, y), score in zip(points, result.points, scores, strict=True):
            assert re.fullmatch(rf"\S+ {NUMBER} {NUMBER} [01]\.\d\d", line), line
            assert line.split(" ")[1:] == [f"{x:.1f}", f"{y:.1f}", f"{score:.2f}"]


def test_the_json_gives_the_issue_s_keys_in_the_photo_s_pixels(model, answers, capsys):
    names, _, results = answers
    photos = hand_photos()
    code, out, err = guess(capsys, model, *(path for path, _ in photos), "--json")
    assert code == 0 and err == ""
    documents = json.loads(out)
    assert len(documents) == 3
    errors = []
    for document, (photo, truth), result in zip(documents, photos, results, strict=True):
        assert list(document) == ["image", "box", "score", "keypoints"]
        assert document["image"] == str(photo)  # the path as given, as the classes' --json names it
        x0, y0, x1, y1 = result.box
        np.testing.assert_allclose(document["box"], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
        assert [list(point) for point in document["keypoints"]] == [["name", "x", "y", "score"]] * 21
        assert [point["name"] for point in document["keypoints"]] == names
        found = np.array([[point["x"], point["y"]] for point in document["keypoints"]])
        np.testing.assert_allclose(found, result.points, atol=1e-4)
        scores = [point["score"] for point in document["keypoints"]]
        assert all(0 <= score <= 1 for score in scores)
        assert document["score"] == pytest.approx(np.mean(scores), abs=1e-6)
        # A one-stage model reads the whole 100 px photo: its box is the photo; its points are in
        # the photo's pixels (3 epochs on 80 photos place them near the hand's middle, some 20 px
        # from the labels; the same points as a 0-1 share of the photo are 50 to 70 px away).
        np.testing.assert_allclose(document["box"], [0, 0, 100, 100], atol=1e-3)
        assert ((found >= 0) & (found <= 100)).all()
        shown = truth[:, 2] > 0
        errors.append(np.linalg.norm(found[shown] - truth[shown, :2], axis=1).mean())
    assert np.mean(errors) < 35, errors


def drawn_pixels(path) -> np.ndarray:
    image = Image.open(path)
    assert image.format == "PNG" and image.info.get("Software") == "tensor-guess"
    return np.asarray(image.convert("RGB"))


def test_draw_writes_each_photo_with_its_points_drawn(model, answers, capsys, tmp_path):
    _, bones, results = answers
    photo, _ = hand_photos()[0]
    folder = tmp_path / "drawn"  # made by guess
    code, out, err = guess(capsys, model, photo, "--draw", folder, "--json")
    assert code == 0 and err == "" and json.loads(out)[0]["image"] == str(photo)
    assert sorted(p.name for p in folder.iterdir()) == [f"{photo.stem}.png"]
    pixels = drawn_pixels(folder / f"{photo.stem}.png")
    original = read_image(photo)
    assert pixels.shape == original.shape  # the photo's own size: a drawn pixel is where the numbers say
    for x, y in results[0].points:  # the pixel holding each point is the points' colour
        assert tuple(pixels[int(y), int(x)]) == PREDICTED, (x, y)
    assert (pixels == BOX).all(axis=2).any()  # the box, round the photo's edge
    changed = (pixels != original).any(axis=2).mean()
    assert 0.02 < changed < 0.5, changed  # the points and bones, over the photo left as it was
    assert len(bones) == 21


def test_draw_keeps_a_file_it_did_not_write_and_replaces_its_own(model, capsys, tmp_path):
    photo, _ = hand_photos()[0]
    folder = tmp_path / "drawn"
    folder.mkdir()
    theirs = folder / f"{photo.stem}.png"
    theirs.write_bytes(b"my own notes, not a drawing\n")
    same_name = tmp_path / "elsewhere" / photo.name  # a second photo of the same name
    same_name.parent.mkdir()
    shutil.copy(hand_photos()[1][0], same_name)
    for run in range(2):
        code, out, err = guess(capsys, model, photo, same_name, "--draw", folder)
        assert code == 0, err
        assert theirs.read_bytes() == b"my own notes, not a drawing\n"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [theirs.name, f"{photo.stem}-2.png", f"{photo.stem}-3.png"]), run
        notes = err.splitlines()
        assert len(notes) == 2 and all(line.startswith("tensor-guess: ") for line in notes), err
        assert notes[0] == (f"tensor-guess: {photo} drawn into {folder / (photo.stem + '-2.png')} "
                            f"({photo.stem}.png is not a drawing of guess --draw, kept as it is)")
        assert notes[1] == (f"tensor-guess: {same_name} drawn into {folder / (photo.stem + '-3.png')} "
                            f"({photo.stem}.png is not a drawing of guess --draw, kept as it is; "
                            f"{photo.stem}-2.png holds another photo's drawing of this run)")
    # The rerun drew into the same files: each its own photo's drawing.
    assert drawn_pixels(folder / f"{photo.stem}-2.png").shape == read_image(photo).shape
    first = drawn_pixels(folder / f"{photo.stem}-2.png")
    second = drawn_pixels(folder / f"{photo.stem}-3.png")
    assert (first != second).any()


def test_draw_needs_the_model_s_skeleton_and_says_so_before_any_work(model, capsys, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("bottlenecks", "report"))
    (copy / model_dir.POINTS_SKELETON).unlink()
    photo, _ = hand_photos()[0]
    code, out, err = guess(capsys, copy, photo, "--draw", tmp_path / "drawn")
    assert code == 1 and out == "" and not (tmp_path / "drawn").exists()
    assert err.count("\n") == 1 and str(copy / model_dir.POINTS_SKELETON) in err and "train" in err
    code, out, _ = guess(capsys, copy, photo)  # guess itself needs no skeleton
    assert code == 0 and out.startswith("box ")
    (tmp_path / "file").write_text("")
    code, _, err = guess(capsys, model, photo, "--draw", tmp_path / "file")
    assert code == 2 and "is not a folder" in err and (tmp_path / "file").read_text() == ""
