"""data/keypoints.py: the shared COCO and DeepLabCut files, DeepLabCut 2.2's layout, plain CSV, bad input.

Every photo is a real one from ../shared (copied into tmp_path where a test needs a photo of its
own); the small bad files are written here from the real ones' values.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, SIGN_DIGITS
from PIL import Image

from tensorguess.data.images import read_image, upright_size
from tensorguess.data.keypoint_rows import PIXEL_CENTRE, KeypointsError
from tensorguess.data.keypoints import detect_format, read_keypoints
from tensorguess.data.point_names import pairs_from_names, parse_pairs, parse_skeleton
from tensorguess.errors import TensorGuessError, UsageError

KEYPOINTS = SHARED / "datasets" / "keypoints"
HANDS = KEYPOINTS / "sign-digits-hands.json"
MOUSE = KEYPOINTS / "openfield-mouse"
MOUSE_NAMES = ("snout", "leftear", "rightear", "tailbase")
HAND_PHOTO = SIGN_DIGITS / "0" / "IMG_1118.JPG"  # 100x100


def read(path, root=None, **options):
    """(Keypoints, warned lines, said lines)."""
    warned, said = [], []
    result = read_keypoints(path, root, warn=warned.append, say=said.append, **options)
    return result, warned, said


def by_photo(points):
    return {instance.relative: instance for instance in points.instances}


def mouse_rows() -> list[list[str]]:
    with open(MOUSE / "CollectedData.csv", newline="") as handle:
        return list(csv.reader(handle))


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def coco(path: Path, images, annotations, names=("a", "b"), **category) -> Path:
    """A COCO keypoints file: `images` as (file_name, width, height), `annotations` as (image, keypoints)."""
    document = {
        "images": [{"id": at + 1, "file_name": name, "width": width, "height": height}
                   for at, (name, width, height) in enumerate(images)],
        "annotations": [{"id": at + 1, "image_id": image + 1, "category_id": 1, "keypoints": keypoints}
                        for at, (image, keypoints) in enumerate(annotations)],
        "categories": [{"id": 1, "name": "thing", "keypoints": list(names), **category}],
    }
    path.write_text(json.dumps(document))
    return path


def hand_photos(folder: Path, count: int) -> list[str]:
    """`count` copies of a real 100x100 hand photo in `folder`, by name."""
    names = [f"hand{at}.jpg" for at in range(count)]
    for name in names:
        shutil.copy(HAND_PHOTO, folder / name)
    return names


# The shared sets.

def test_the_mouse_json_and_csv_give_the_same_points_once_the_json_is_read_as_pixel_indices():
    table, warned, said = read(MOUSE / "CollectedData.csv")
    as_indices, _, _ = read(MOUSE / "keypoints.json", origin=PIXEL_CENTRE)
    as_written, _, _ = read(MOUSE / "keypoints.json")
    assert table.names == as_indices.names == MOUSE_NAMES
    assert (table.format, as_indices.format) == ("deeplabcut", "coco")
    assert len(table.instances) == len(as_indices.instances) == 87 and not warned
    rows, columns = by_photo(table), by_photo(as_indices)
    assert sorted(rows) == sorted(columns)
    difference = np.stack([columns[name].points - rows[name].points for name in rows])
    # The JSON keeps 2 decimals of the CSV's values: 0.005 apart at most, no bias.
    assert np.abs(difference).max() <= 0.0051 and abs(difference.mean()) < 1e-3
    # Read as COCO's continuous coordinates, the JSON sits half a pixel up and left of the CSV.
    shifted = np.stack([by_photo(as_written)[name].points - rows[name].points for name in rows])
    assert np.abs(shifted + 0.5).max() <= 0.0051
    first = rows["img0000.png"]
    assert np.allclose(first.points[0], (21.521 + 0.5, 265.428 + 0.5))  # DeepLabCut's indices, +0.5
    assert (first.width, first.height, first.path) == (640, 480, MOUSE / "img0000.png")
    assert table.flip_pairs == ((1, 2),) and table.pairs_from == "the names"
    assert as_indices.skeleton == ((0, 1), (0, 2), (1, 3), (2, 3)) and table.skeleton == ()
    assert table.found_by.endswith(": 87 by their last part") and len(said) == 1
    assert "flip pairs leftear<->rightear from the names" in said[0]


def test_the_hands_read_whole_with_their_unlabelled_points_masked_and_not_called_outside():
    hands, warned, said = read(HANDS, SIGN_DIGITS)
    assert len(hands.instances) == 1632 and warned == []
    assert len(hands.names) == 21 and hands.names[:2] == ("wrist", "thumb_cmc")
    assert hands.flip_pairs == () and len(hands.skeleton) == 21 and hands.skeleton[0] == (0, 1)
    masked = np.stack([~instance.labelled for instance in hands.instances])
    assert masked.sum() == 506 and masked[:, 0].sum() == 494 and masked[:, 1].sum() == 12
    points = np.stack([instance.points for instance in hands.instances])
    assert np.isnan(points[masked]).all() and not np.isnan(points[~masked]).any()
    assert points[~masked].min() >= 0 and points[~masked].max() <= 100
    assert all((instance.width, instance.height) == (100, 100) for instance in hands.instances)
    assert hands.instances[0].relative == "0/IMG_1118.JPG"
    assert hands.instances[0].bbox == (36.29, 20.58, 29.67, 48.82)
    assert "no flip pairs from the names" in said[0] and "1,632 as written" in said[0]


# DeepLabCut >= 2.2 and the plain CSV, built from the mouse's values.

def test_deeplabcut_2_2_layout_with_three_index_columns_individuals_and_empty_cells(tmp_path):
    rows = mouse_rows()
    body = [path.split("/") + values for path, *values in rows[3:]]
    for row in body[:3]:
        row[5:7] = ["", ""]  # leftear of the first three frames not labelled
    body[3][3:] = [""] * 8  # the fourth frame: nothing labelled
    layout = [["scorer", "", "", *rows[0][1:]], ["individuals", "", "", *["mouse1"] * 8],
              ["bodyparts", "", "", *rows[1][1:]], ["coords", "", "", *rows[2][1:]], *body]
    table, warned, _ = read(write_csv(tmp_path / "CollectedData_Pranav.csv", layout), MOUSE)
    flat, _, _ = read(MOUSE / "CollectedData.csv")
    assert table.names == MOUSE_NAMES and len(table.instances) == 86
    assert warned == [f"tensor-guess: {tmp_path / 'CollectedData_Pranav.csv'}: line 8: no labelled point; "
                      "skipped"]
    expected = by_photo(flat)
    for instance in table.instances:
        wanted = expected[instance.relative]
        assert np.array_equal(instance.labelled, wanted.labelled) or instance.relative in (
            "img0000.png", "img0001.png", "img0002.png")
        assert np.allclose(instance.points[instance.labelled], wanted.points[instance.labelled])
    assert by_photo(table)["img0001.png"].labelled.tolist() == [True, False, True, True]
    assert np.isnan(by_photo(table)["img0001.png"].points[1]).all()
    assert table.found_by.endswith(": 86 by their last part")


def test_two_individuals_on_one_frame_skip_that_frame_and_an_absent_one_says_nothing(tmp_path):
    rows = mouse_rows()
    second = [[""] * 8 for _ in rows[3:]]
    second[0] = rows[3][1:]  # mouse2 labelled on the first frame only
    layout = [["scorer", *rows[0][1:] * 2], ["individuals", *["mouse1"] * 8, *["mouse2"] * 8],
              ["bodyparts", *rows[1][1:] * 2], ["coords", *rows[2][1:] * 2],
              *[[row[0], *row[1:], *more] for row, more in zip(rows[3:], second, strict=True)]]
    table, warned, _ = read(write_csv(tmp_path / "CollectedData.csv", layout), MOUSE)
    assert len(table.instances) == 86 and "img0000.png" not in by_photo(table)
    assert warned == [f"tensor-guess: {tmp_path / 'CollectedData.csv'}: img0000.png: 2 objects labelled "
                      "(line 5, individual mouse1; line 5, individual mouse2); one object a photo is "
                      "learned: photo skipped"]


def test_a_plain_csv_is_read_as_written_with_empty_cells_unlabelled(tmp_path):
    rows = mouse_rows()
    header = ["image"] + [f"{name}_{axis}" for name in MOUSE_NAMES for axis in "xy"]
    body = [[path.rsplit("/", 1)[1], *values] for path, *values in rows[3:13]]
    body[2][7:9] = ["", ""]
    table, warned, _ = read(write_csv(tmp_path / "points.csv", [header, *body]), MOUSE)
    assert (table.format, table.names, len(table.instances), warned) == ("csv", MOUSE_NAMES, 10, [])
    first = table.instances[0]
    assert first.relative == "img0000.png"
    assert np.allclose(first.points, np.array(rows[3][1:], dtype=float).reshape(4, 2))  # no shift
    assert table.instances[2].labelled.tolist() == [True, True, True, False]
    assert table.found_by.endswith(": 10 as written")


def test_the_format_comes_from_the_content():
    assert detect_format(' {"images": []}') == "coco"
    assert detect_format("scorer,Pranav\n") == "deeplabcut"
    assert detect_format('"scorer",x\n') == "deeplabcut"
    assert detect_format("image,a_x,a_y\n") == "csv"


# Names, pairs and skeletons.

def test_pairs_come_from_names_of_every_common_spelling_and_never_from_a_lone_letter_inside_a_word():
    names = ["left_ear", "right_ear", "leftear2", "rightear2", "l_knee", "r_knee", "LeftHand", "RightHand",
             "ear_l", "ear_r", "eye.L", "eye.R", "LShoulder", "RShoulder", "ring_tip", "lower_lip", "nose"]
    found = [(names[a], names[b]) for a, b in pairs_from_names(names)]
    assert found == [("left_ear", "right_ear"), ("leftear2", "rightear2"), ("l_knee", "r_knee"),
                     ("LeftHand", "RightHand"), ("ear_l", "ear_r"), ("eye.L", "eye.R"),
                     ("LShoulder", "RShoulder")]
    assert pairs_from_names(["left_ear", "LeftEar", "right_ear"]) == []  # two left ears: no guess


def test_flag_texts_give_pairs_and_bones_or_a_usage_error():
    assert parse_pairs("leftear:rightear, l_eye:r_eye") == [("leftear", "rightear"), ("l_eye", "r_eye")]
    assert parse_skeleton("snout-leftear,snout-rightear") == [("snout", "leftear"), ("snout", "rightear")]
    assert parse_skeleton("left-ear-snout", names=["left-ear", "snout"]) == [("left-ear", "snout")]
    with pytest.raises(UsageError, match="'leftear' is not two names joined by ':'"):
        parse_pairs("leftear,l_eye:r_eye")
    with pytest.raises(UsageError, match="not two names joined by '-'"):
        parse_skeleton("snout-leftear-rightear")


def test_pairs_and_a_skeleton_from_the_caller_replace_the_file_and_are_checked():
    table, _, _ = read(MOUSE / "CollectedData.csv", pairs=[("snout", "tailbase")],
                       skeleton=parse_skeleton("snout-leftear"))
    assert (table.flip_pairs, table.pairs_from, table.skeleton) == (((0, 3),), "the caller", ((0, 1),))
    with pytest.raises(UsageError, match="'nose' is no point of the file"):
        read(MOUSE / "CollectedData.csv", pairs=parse_pairs("nose:tailbase"))
    with pytest.raises(UsageError, match="'snout' is in two pairs"):
        read(MOUSE / "CollectedData.csv", pairs=parse_pairs("snout:leftear,snout:rightear"))


def test_a_coco_flip_index_gives_the_pairs(tmp_path):
    photo = hand_photos(tmp_path, 1)[0]
    path = coco(tmp_path / "k.json", [(photo, 100, 100)], [(0, [10, 10, 2, 20, 20, 2, 30, 30, 2])],
                names=("x1", "x2", "x3"), flip_index=[2, 1, 0])
    points, _, _ = read(path)
    assert (points.flip_pairs, points.pairs_from) == (((0, 2),), "the file")


# Bad annotations: one line each, naming the file and the annotation or line.

def test_bad_annotations_cost_one_line_each_and_the_rest_is_read(tmp_path):
    photos = hand_photos(tmp_path, 6)
    images = [(photos[0], 100, 100), ("missing.jpg", 100, 100), (photos[2], 100, 100), (photos[3], 200, 100),
              (photos[4], 100, 100), (photos[5], 100, 100)]
    annotations = [(0, [10, 10, 2, 20, 20, 2]), (1, [10, 10, 2, 20, 20, 2]), (2, [10, 10, 0, 20, 20, 0]),
                   (3, [10, 10, 2, 20, 20, 2]), (4, [10, 10, 2]), (0, [0, 0, 0, 20, 20, 2]),
                   (5, [10, 10, 2, 20, 20, 0])]
    path = coco(tmp_path / "k.json", images, annotations)
    points, warned, _ = read(path)
    head = f"tensor-guess: {path}: "
    assert warned == [
        head + "annotation 5 (image 5, hand4.jpg): keypoints hold 3 numbers, not 3 x 2 = 6 (x, y, v for each "
               "point); skipped",
        head + f"annotation 2 (image 2, missing.jpg): photo missing.jpg not found under {tmp_path}, as "
               "written nor by its last parts; skipped",
        head + "annotation 3 (image 3, hand2.jpg): no labelled point; skipped",
        head + "hand0.jpg: 2 objects labelled (annotation 1 (image 1, hand0.jpg); annotation 6 (image 1, "
               "hand0.jpg)); one object a photo is learned: photo skipped",
        head + "annotation 4 (image 4, hand3.jpg): the file says 200x100, the photo is 100x100: the points "
               "belong to another copy of it; skipped",
    ]
    [kept] = points.instances
    assert (kept.relative, kept.where) == ("hand5.jpg", "annotation 7 (image 6, hand5.jpg)")
    assert kept.labelled.tolist() == [True, False] and np.allclose(kept.points[0], (10, 10))


def test_a_labelled_point_outside_its_photo_is_dropped_with_a_line(tmp_path):
    photos = hand_photos(tmp_path, 2)
    path = coco(tmp_path / "k.json", [(photos[0], 100, 100), (photos[1], 100, 100)],
                [(0, [10, 10, 2, 150, 20, 2]), (1, [100, 100, 2, 0, 0, 1])])
    points, warned, _ = read(path)
    assert warned == [f"tensor-guess: {path}: annotation 1 (image 1, hand0.jpg): point b at (150.0, 20.0) is "
                      "outside the 100x100 photo; not learned"]
    first, second = points.instances
    assert first.labelled.tolist() == [True, False] and np.isnan(first.points[1]).all()
    assert second.labelled.tolist() == [True, True]  # the edges are inside; v = 1 is labelled


def test_a_file_where_every_photo_is_skipped_trains_nothing(tmp_path):
    path = coco(tmp_path / "k.json", [("missing.jpg", 100, 100)], [(0, [10, 10, 2, 20, 20, 2])])
    with pytest.raises(KeypointsError, match=r"k\.json: no photo with labelled points under .* \(of 1 "):
        read(path)


def test_lines_of_one_kind_stop_at_five_then_count_the_rest(tmp_path):
    path = coco(tmp_path / "k.json", [(f"gone{at}.jpg", 100, 100) for at in range(8)] + [
        (hand_photos(tmp_path, 1)[0], 100, 100)], [(at, [10, 10, 2, 20, 20, 2]) for at in range(9)])
    points, warned, _ = read(path)
    assert len(points.instances) == 1 and len(warned) == 6
    assert all("not found" in line for line in warned[:5])
    assert warned[5] == f"tensor-guess: {path}: ... and 3 more photos not found (8 in all)"


def test_deeplabcut_rows_name_their_line(tmp_path):
    rows = mouse_rows()[:6]
    rows[3][2] = "12,5"  # a decimal comma
    rows[4] = rows[4][:5]
    points, warned, _ = read(write_csv(tmp_path / "CollectedData.csv", rows), MOUSE)
    head = f"tensor-guess: {tmp_path / 'CollectedData.csv'}: "
    assert warned == [head + "line 4: '12,5' (snout y) is not a number; row skipped",
                      head + "line 5: 5 cells, the header 9; row skipped"]
    assert [instance.relative for instance in points.instances] == ["img0002.png"]


@pytest.mark.parametrize("text, message", [
    ('{"images": [], "annotations": [], "categories": [{"keypoints": ["a", "b", "a"]}]}',
     r"point name\(s\) 'a' listed twice"),
    ('{"images": [', r"is not valid JSON"),
    ('{"images": [], "annotations": []}', r"has no 'categories' list"),
    ('{"images": [], "annotations": [], "categories": [{"name": "box"}]}', r"no category names keypoints"),
    ('{"images": [], "annotations": [], "categories": [{"keypoints": ["a", "b"], "skeleton": [[1, 3]]}]}',
     r"skeleton bone \[1, 3\] names no two points"),
    ("image,a_x,a_y,a_x\nx.jpg,1,2,3\n", r"line 1: point name 'a' listed twice \(a_x\)"),
    ("image,a_x,b_y\n", r"point 'a' has only one of _x and _y"),
    ("scorer,s,s,s,s\nbodyparts,a,a,a,a\ncoords,x,y,x,y\n", r"body part\(s\) 'a' listed twice"),
    ("scorer,s,s,s\nbodyparts,a,a,a\ncoords,x,y,likelihood\n", r"DeepLabCut's predictions, not its labels"),
    ("scorer,s,s\ncoords,x,y\nimg.png,1,2\n", r"line 2: starts with 'coords', not 'bodyparts'"),
    ("", r"is empty"),
])
def test_a_malformed_file_is_refused_whole_naming_the_file(tmp_path, text, message):
    path = tmp_path / "labels.file"
    path.write_text(text)
    with pytest.raises(KeypointsError, match=message) as refused:
        read(path, tmp_path)
    assert str(refused.value).startswith(str(path)) or f" {path}" in str(refused.value)
    assert isinstance(refused.value, TensorGuessError) and "\n" not in str(refused.value)


def test_a_binary_file_is_refused_as_not_text(tmp_path):
    path = tmp_path / "CollectedData.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe")
    with pytest.raises(KeypointsError, match=r"is not UTF-8 text \(a DeepLabCut \.h5\?"):
        read(path)


# EXIF: points are on the upright photo.

def turned_copy(folder: Path) -> Path:
    """The first mouse frame (640x480) as a JPEG whose EXIF orientation 6 turns it upright to 480x640."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = folder / "turned.jpg"
    Image.open(MOUSE / "img0000.png").convert("RGB").save(path, exif=exif.tobytes())
    return path


def test_sizes_are_the_upright_photo_s_as_read_image_decodes_it(tmp_path):
    photo = turned_copy(tmp_path)
    size = upright_size(photo)
    assert (size.width, size.height, size.sides_swapped) == (480, 640, True)
    assert read_image(photo).shape[:2] == (640, 480)
    path = coco(tmp_path / "k.json", [(photo.name, 480, 640)], [(0, [470, 630, 2, 20, 20, 2])])
    points, warned, _ = read(path)
    assert warned == [] and (points.instances[0].width, points.instances[0].height) == (480, 640)


def test_a_coco_size_of_the_photo_as_stored_is_refused_as_labelled_unturned(tmp_path):
    photo = turned_copy(tmp_path)
    shutil.copy(HAND_PHOTO, tmp_path / "hand.jpg")
    path = coco(tmp_path / "k.json", [(photo.name, 640, 480), ("hand.jpg", 100, 100)],
                [(0, [10, 10, 2, 20, 20, 2]), (1, [10, 10, 2, 20, 20, 2])])
    points, warned, _ = read(path)
    assert [instance.relative for instance in points.instances] == ["hand.jpg"]
    assert warned == [f"tensor-guess: {path}: annotation 1 (image 1, turned.jpg): the file's 640x480 is the "
                      "photo as stored, but its EXIF orientation turns it to 480x640, the frame points are "
                      "read in; label it turned (or strip its EXIF orientation); skipped"]
