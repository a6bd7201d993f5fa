"""dataset.py: labels, class discovery and the stable train/validation/test split."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
from pathlib import Path

import pytest

from tensorguess.data.dataset import (
    MAX_NUM_IMAGES_PER_CLASS,
    SPLITS,
    DatasetError,
    ImageSet,
    discover,
    label_for,
    split,
    split_key,
)


def make_tree(root: Path, classes: dict[str, list[str]]) -> Path:
    """Folders of small files; split() never decodes them, so any bytes will do."""
    for folder, names in classes.items():
        for name in names:
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{folder}/{name}".encode())
    root.mkdir(parents=True, exist_ok=True)
    return root


def split_all(root: Path, testing: float = 10, validation: float = 10):
    image_set = discover(root)
    return image_set, split(image_set, image_set.files, testing, validation)


def where(result, root: Path) -> dict[str, str]:
    """relative path -> split name."""
    return {
        path.relative_to(root).as_posix(): name
        for name in SPLITS
        for files in result.parts[name].values()
        for path in files
    }


def retrain_percentage(name: str) -> float:
    """retrain.py's formula, written out again from its source."""
    hash_name = re.sub(r"_nohash_.*$", "", name)
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    return (int(hashed, 16) % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)


# --- labels -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "folder, label",
    [
        ("darth_vader", "darth vader"),
        ("Iron--Man 2", "iron man 2"),
        ("cats", "cats"),
        ("Spider-Man", "spider man"),
        ("R2D2", "r2d2"),
        ("a.b.c", "a b c"),
        ("__x__", "x"),  # edges trimmed: retrain.py's " x " was read back as "x"
        ("Pokémon", "pokémon"),  # letters of every script kept (retrain.py made it "pok mon")
    ],
)
def test_label_for(folder, label):
    assert label_for(folder) == label


# --- discovery --------------------------------------------------------------------------------------

def test_discover_sorts_folders_and_ignores_hidden_ones_and_loose_files(tmp_path):
    root = make_tree(tmp_path / "photos", {
        "zebra": ["z1.jpg"],
        "Ant": ["a1.jpg"],
        "darth_vader": ["d2.jpg", "d1.jpg", ".hidden.jpg", "more/d3.jpg"],
        "bee": ["b.jpg"],
        ".git": ["HEAD"],
        ".thumbnails": ["t.jpg"],
    })
    (root / "notes.txt").write_text("not a class")
    image_set = discover(root)
    assert isinstance(image_set, ImageSet)
    assert image_set.root == root
    assert image_set.folders == ["Ant", "bee", "darth_vader", "zebra"]
    assert image_set.labels == ["ant", "bee", "darth vader", "zebra"]
    assert [p.relative_to(root).as_posix() for p in image_set.files["darth vader"]] == [
        "darth_vader/d1.jpg", "darth_vader/d2.jpg", "darth_vader/more/d3.jpg"]
    assert set(image_set.files) == set(image_set.labels)


def test_two_folders_with_one_label_are_an_error_naming_both(tmp_path):
    root = make_tree(tmp_path / "photos", {"Darth_Vader": ["a.jpg"], "darth-vader": ["b.jpg"],
                                           "yoda": ["c.jpg"]})
    with pytest.raises(DatasetError) as caught:
        discover(root)
    message = str(caught.value)
    assert "'Darth_Vader'" in message and "'darth-vader'" in message and "darth vader" in message


def test_missing_image_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nowhere")


# --- split_key --------------------------------------------------------------------------------------

def test_split_key_matches_retrain_formula():
    for name in ["cats/cat1.jpg", "dogs/Rex 2.png", "bob/bob_nohash_3.jpg", "é/ü.jpg", "x"]:
        assert split_key(name) == retrain_percentage(name)
    # _nohash_ and everything after it is dropped before hashing.
    expected = int(hashlib.sha1(b"leaves/leaf").hexdigest(), 16) % (2**27) * (100.0 / (2**27 - 1))
    assert split_key("leaves/leaf_nohash_0.jpg") == expected
    assert split_key("leaves/leaf_nohash_17.png") == expected
    # A value written down once: sha1("cats/cat1.jpg") mod 2**27, as a percentage.
    assert split_key("cats/cat1.jpg") == pytest.approx(10.176386759999296, abs=1e-12)
    assert hashlib.sha1(b"cats/cat1.jpg").hexdigest() == "daa2ebbbd913fb546c5bb99fe679afc318d06993"
    assert all(0.0 <= split_key(f"c/{i}.jpg") <= 100.0 + 1e-9 for i in range(2000))


# --- split ------------------------------------------------------------------------------------------

def numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d}.jpg" for i in range(count)]


def test_split_follows_the_hash_for_large_classes(tmp_path):
    root = make_tree(tmp_path / "photos", {"cats": numbered("cat", 300), "dogs": numbered("dog", 300)})
    _, result = split_all(root, testing=20, validation=10)
    placed = where(result, root)
    assert len(placed) == 600
    for relative, name in placed.items():
        key = retrain_percentage(relative)
        expected = "validation" if key < 10 else "testing" if key < 30 else "training"
        assert name == expected, relative
    sizes = result.sizes()
    assert sum(sizes.values()) == 600
    assert 30 <= sizes["validation"] <= 100 and 80 <= sizes["testing"] <= 170
    # each split lists its files in path order
    for part in result.parts.values():
        for files in part.values():
            assert files == sorted(files, key=lambda p: p.as_posix())


def test_split_is_stable_and_survives_moving_the_image_folder(tmp_path):
    classes = {"cats": numbered("cat", 40), "dogs": numbered("dog", 25), "Iron Man": numbered("im", 7)}
    root = make_tree(tmp_path / "a" / "photos", classes)
    _, first = split_all(root)
    _, again = split_all(root)
    assert first.parts == again.parts
    moved = tmp_path / "elsewhere" / "renamed-set"
    moved.parent.mkdir()
    shutil.move(str(root), str(moved))
    _, after_move = split_all(moved)
    assert where(after_move, moved) == where(first, root)
    assert after_move.per_class_sizes() == first.per_class_sizes()


def test_adding_photos_keeps_old_photos_in_their_split(tmp_path):
    root = make_tree(tmp_path / "photos", {"cats": numbered("cat", 60), "dogs": numbered("dog", 60)})
    _, before = split_all(root)
    make_tree(root, {"cats": numbered("newcat", 30)})
    _, after = split_all(root)
    old = where(before, root)
    new = where(after, root)
    assert {k: new[k] for k in old} == old


def test_nohash_files_land_in_one_split(tmp_path):
    groups = {f"{person}_nohash_{i}.jpg" for person in ("bob", "alice", "carol", "dave") for i in range(4)}
    root = make_tree(tmp_path / "photos", {
        "faces": sorted(groups) + numbered("face", 40),
        "other": numbered("o", 40),
    })
    _, result = split_all(root, testing=25, validation=25)
    placed = where(result, root)
    for person in ("bob", "alice", "carol", "dave"):
        splits = {placed[f"faces/{person}_nohash_{i}.jpg"] for i in range(4)}
        assert len(splits) == 1, (person, splits)


def test_filling_empty_splits_does_not_break_up_a_nohash_group(tmp_path):
    root = make_tree(tmp_path / "photos", {
        "bee": [f"bee{i}.jpg" for i in range(4)] + [f"bob_nohash_{i}.jpg" for i in range(3)],
        "other": numbered("o", 30),
    })
    _, result = split_all(root)
    placed = where(result, root)
    assert all(result.parts[name]["bee"] for name in SPLITS)
    assert len({placed[f"bee/bob_nohash_{i}.jpg"] for i in range(3)}) == 1


CLASS_NAMES = ["a", "Z", "darth_vader", "Iron--Man 2", "cat", "dogs", "x1", "y 2", "owl", "ant",
               "bee", "cow", "elk", "emu", "fox", "gnu", "hen", "jay", "koi", "yak", "Ünïcode", "123"]


@pytest.mark.parametrize("seed", range(6))
def test_every_class_of_three_or_more_gets_every_split(tmp_path, seed):
    chooser = random.Random(seed)
    classes = {}
    for index, name in enumerate(CLASS_NAMES):
        size = 3 + (index + seed) % 4  # 3..6
        stem = chooser.choice(["img", "IMG_", "photo-", name, ""])
        classes[name] = [f"{stem}{chooser.randrange(10**6)}_{i}.{chooser.choice(['jpg', 'png'])}"
                         for i in range(size)]
    root = make_tree(tmp_path / "photos", classes)
    image_set, result = split_all(root)
    per_class = result.per_class_sizes()
    for label in image_set.labels:
        total = len(image_set.files[label])
        counts = {name: per_class[name][label] for name in SPLITS}
        assert sum(counts.values()) == total, (label, counts)
        assert counts["validation"] >= 1 and counts["testing"] >= 1 and counts["training"] >= 1, (
            label, counts)
        # only the fewest moves: never more than one file forced into each of the small splits
        assert counts["validation"] + counts["testing"] <= max(2, total - 1)
    files_everywhere = [p for name in SPLITS for files in result.parts[name].values() for p in files]
    assert len(files_everywhere) == len(set(files_everywhere)) == sum(map(len, image_set.files.values()))


@pytest.mark.parametrize("percentages", [(0, 0), (50, 50), (90, 5), (10, 90)])
def test_small_classes_get_every_split_whatever_the_percentages(tmp_path, percentages):
    testing, validation = percentages
    root = make_tree(tmp_path / "photos", {f"class{n}": numbered(f"c{n}_", n) for n in range(3, 12)})
    image_set, result = split_all(root, testing=testing, validation=validation)
    for label in image_set.labels:
        assert all(result.parts[name][label] for name in SPLITS), (label, result.per_class_sizes())


def test_class_of_two_images_is_all_training(tmp_path):
    root = make_tree(tmp_path / "photos", {"pair": ["a.jpg", "b.jpg"], "many": numbered("m", 30)})
    _, result = split_all(root)
    assert len(result.parts["training"]["pair"]) == 2
    assert result.parts["validation"]["pair"] == [] and result.parts["testing"]["pair"] == []


def test_class_with_one_readable_image_is_an_error_naming_its_folder(tmp_path):
    root = make_tree(tmp_path / "photos", {"Lonely_Folder": ["only.jpg", "broken.jpg"],
                                           "cats": numbered("cat", 10), "Empty One": ["x.jpg"]})
    image_set = discover(root)
    readable = dict(image_set.files)
    readable["lonely folder"] = [root / "Lonely_Folder" / "only.jpg"]  # broken.jpg could not be read
    readable["empty one"] = []
    with pytest.raises(DatasetError) as caught:
        split(image_set, readable, 10, 10)
    message = str(caught.value)
    assert "'Lonely_Folder' (1)" in message
    assert "'Empty One' (0)" in message
    assert "cats" not in message.replace(str(root), "")


def test_only_one_class_is_an_error_naming_it(tmp_path):
    root = make_tree(tmp_path / "photos", {"only_cats": numbered("cat", 20)})
    image_set = discover(root)
    with pytest.raises(DatasetError, match=r"at least 2 categories.*'only_cats'"):
        split(image_set, image_set.files, 10, 10)


def test_no_class_at_all_is_an_error(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    image_set = discover(root)
    with pytest.raises(DatasetError, match="at least 2 categories.*found none"):
        split(image_set, image_set.files, 10, 10)
