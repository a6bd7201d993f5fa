"""Where labels and splits come from: folders, a given train/val/test layout, a CSV; and groups."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from test_dataset import make_tree, numbered, where

from tensorguess.data.dataset import SPLITS, DatasetError, discover, split
from tensorguess.data.labels_csv import read_labels_csv


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_csv_beside_the_folders_gives_their_labels_and_split(tmp_path):
    root = make_tree(tmp_path / "photos", {"Darth_Vader": numbered("v", 40), "elsa": numbered("e", 30)})
    folders = discover(root)
    rows = [[p.relative_to(root).as_posix(), p.parent.name] for label in folders.labels
            for p in folders.files[label]]
    from_csv = read_labels_csv(write_csv(root / "labels.csv", ["Path", "Label"], rows[::-1]))
    assert from_csv.labels == folders.labels == ["darth vader", "elsa"]
    assert from_csv.files == folders.files
    assert from_csv.given is None and "labels.csv (70 rows)" in from_csv.origin
    assert split(from_csv, from_csv.files, 10, 10).parts == split(folders, folders.files, 10, 10).parts


def test_a_csv_split_column_is_honoured_and_unknown_values_refused(tmp_path):
    root = make_tree(tmp_path / "photos", {"a": numbered("a", 12), "b": numbered("b", 12)})
    names = {"a": numbered("a", 12), "b": numbered("b", 12)}
    rows = [[f"{label}/{name}", label, ["train", "val", "test", "Training"][i % 4]]
            for label, files in names.items() for i, name in enumerate(files)]
    image_set = read_labels_csv(write_csv(root / "l.csv", ["file", "class", "split"], rows))
    result = split(image_set, image_set.files, 10, 10)
    placed = where(result, root)
    for name, _, given in rows:
        assert placed[name] == {"train": "training", "training": "training", "val": "validation",
                                "test": "testing"}[given.lower()]
    rows[3][2] = "holdout"
    with pytest.raises(DatasetError, match=r"line 5: split 'holdout' is none of train, val"):
        read_labels_csv(write_csv(root / "bad.csv", ["file", "class", "split"], rows))
    with pytest.raises(DatasetError, match=r"has no label column \(its columns: file, kind\)"):
        read_labels_csv(write_csv(root / "bad2.csv", ["file", "kind"], [["a/a000.jpg", "a"]]))
    # evaluate's view: the test rows only
    tests = read_labels_csv(root / "l.csv", only_split="testing")
    assert sum(len(f) for f in tests.files.values()) == 6


def test_a_train_val_test_layout_is_taken_as_a_given_split(tmp_path):
    root = tmp_path / "set"
    make_tree(root / "train", {"cats": numbered("c", 20), "dogs": numbered("d", 20)})
    make_tree(root / "val", {"cats": numbered("vc", 3), "dogs": numbered("vd", 3)})
    make_tree(root / "test", {"cats": numbered("tc", 4), "dogs": numbered("td", 4)})
    image_set = discover(root)
    assert image_set.labels == ["cats", "dogs"] and "Split given by the folders" in image_set.origin
    result = split(image_set, image_set.files, 30, 30)
    assert result.sizes() == {"training": 40, "validation": 6, "testing": 8}
    assert all(p.parts[-3] == "test" for files in result.parts["testing"].values() for p in files)
    assert result.notes == []


def test_a_layout_without_val_takes_validation_from_train_by_the_usual_rule(tmp_path):
    root = tmp_path / "set"
    make_tree(root / "train", {"cats": numbered("c", 100), "dogs": numbered("d", 100)})
    make_tree(root / "test", {"cats": numbered("tc", 4), "dogs": numbered("td", 4)})
    image_set = discover(root)
    result = split(image_set, image_set.files, 10, 10)
    assert 8 <= result.sizes()["validation"] <= 35 and result.sizes()["testing"] == 8
    assert any("no validation split given" in note for note in result.notes)


def test_a_folder_named_train_among_classes_is_just_a_class(tmp_path):
    root = make_tree(tmp_path / "set", {"train": numbered("t", 5), "boats": numbered("b", 5)})
    image_set = discover(root)
    assert image_set.given is None and image_set.labels == ["boats", "train"]


def test_groups_land_whole_in_one_split_and_sizes_stay_near_the_asked(tmp_path):
    root = make_tree(tmp_path / "photos", {"cats": numbered("cat", 400), "dogs": numbered("dog", 400)})
    image_set = discover(root)
    files = image_set.files
    groups = [files["cats"][i:i + 4] for i in range(0, 200, 4)] + [files["dogs"][i:i + 2]
                                                                  for i in range(0, 100, 2)]
    result = split(image_set, files, 10, 10, groups)
    placed = where(result, root)
    for group in groups:
        assert len({placed[p.relative_to(root).as_posix()] for p in group}) == 1
    sizes = result.sizes()
    assert 50 <= sizes["validation"] <= 115 and 50 <= sizes["testing"] <= 115, sizes


def test_a_group_too_big_for_its_split_stays_in_training_and_is_named(tmp_path):
    root = make_tree(tmp_path / "photos", {"cats": numbered("cat", 30), "dogs": numbered("dog", 30)})
    image_set = discover(root)
    cats = image_set.files["cats"]
    # find a photo whose key puts it in validation, and group 10 others with it
    first = next(p for p in cats if where(split(image_set, image_set.files, 10, 10), root)[
        p.relative_to(root).as_posix()] == "validation")
    group = [first] + [p for p in cats if p.as_posix() > first.as_posix()][:9]
    result = split(image_set, image_set.files, 10, 10, [group])
    placed = where(result, root)
    assert {placed[p.relative_to(root).as_posix()] for p in group} == {"training"}
    assert any("a group of 10" in note and "kept in training" in note for note in result.notes)


def test_a_class_that_is_one_group_is_not_broken_up_and_says_so(tmp_path):
    root = make_tree(tmp_path / "photos", {"burst": numbered("b", 5), "other": numbered("o", 30)})
    image_set = discover(root)
    result = split(image_set, image_set.files, 10, 10, [image_set.files["burst"]])
    assert len({name for name in SPLITS if result.parts[name]["burst"]}) == 1
    assert any("'burst' has no" in note for note in result.notes)


def test_one_file_under_two_labels_stays_in_one_split(tmp_path):
    root = make_tree(tmp_path / "photos", {"roses": numbered("r", 20), "tulips": numbered("t", 20)})
    shutil.copy(root / "roses" / "r000.jpg", root / "tulips" / "same.jpg")
    rows = [[f"roses/{n}", "roses"] for n in numbered("r", 20)] + [
        [f"tulips/{n}", "tulips"] for n in numbered("t", 20)] + [["roses/r000.jpg", "tulips"]]
    image_set = read_labels_csv(write_csv(root / "l.csv", ["path", "label"], rows))
    result = split(image_set, image_set.files, 30, 30)
    spots = [name for name in SPLITS for label in ("roses", "tulips")
             if root / "roses" / "r000.jpg" in result.parts[name][label]]
    assert len(spots) == 2 and len(set(spots)) == 1
