"""Honest numbers on photo sets as people have them: near-copies kept in one split, duplicates
named, leaks into an evaluation set counted, labels from a CSV."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED, SUPERHEROES, train_config
from PIL import Image, ImageEnhance

from tensorguess.checks.data_checks import across_labels
from tensorguess.data.dataset import discover
from tensorguess.data.images import content_hash
from tensorguess.retrain import retrain

FLOWERS = SHARED / "datasets" / "flowers"


def near_copies(photo: Path, folder: Path) -> list[Path]:
    """The photo and three near-copies of it: re-encoded, cropped by 2%, brightened by 5%."""
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    dx, dy = max(1, width // 50), max(1, height // 50)
    variants = {
        "reencoded": image,
        "cropped": image.crop((dx, dy, width - dx, height - dy)).resize((width, height)),
        "brighter": ImageEnhance.Brightness(image).enhance(1.05),
    }
    made = [folder / photo.name]
    shutil.copy(photo, made[0])
    for name, variant in variants.items():
        buffer = io.BytesIO()
        variant.save(buffer, "JPEG", quality=75)
        made.append(folder / f"{photo.stem}-{name}.jpg")
        made[-1].write_bytes(buffer.getvalue())
    return made


@pytest.fixture(scope="module")
def copied_set(tmp_path_factory):
    """24 superheroes of each class with 3 near-copies each, and one photo under both labels."""
    root = tmp_path_factory.mktemp("near") / "data"
    families = []
    for folder in ("darth_vader", "elsa"):
        (root / folder).mkdir(parents=True)
        for photo in sorted((SUPERHEROES / folder).iterdir())[:24]:
            families.append(near_copies(photo, root / folder))
    shared = sorted((SUPERHEROES / "elsa").iterdir())[30]
    shutil.copy(shared, root / "darth_vader" / "which-one.jpg")
    shutil.copy(shared, root / "elsa" / "which-one.jpg")
    return root, families


@pytest.fixture(scope="module")
def trained_on_copies(copied_set, tmp_path_factory):
    root, families = copied_set
    base = tmp_path_factory.mktemp("tf_files")
    lines: list[str] = []
    log = retrain(train_config(base, root, how_many_training_steps=200, testing_percentage=20,
                               validation_percentage=20), say=lines.append, warn=lines.append)
    return base, log, lines


def test_near_copies_land_whole_in_one_split(copied_set, trained_on_copies):
    _, families = copied_set
    _, log, lines = trained_on_copies
    split_of = {digest: name for name, digests in log["split_digests"].items() for digest in digests}
    for family in families:
        assert len({split_of[content_hash(path)] for path in family}) == 1, family
    sizes = log["split_sizes"]
    assert sizes["validation"] >= 8 and sizes["testing"] >= 8, sizes
    groups = log["data_checks"]["near_duplicate_groups"]
    assert len(groups) >= 48 and all(len(g) >= 2 for g in groups)
    assert any(line.startswith("Data check: ") and "group(s) of identical or near-duplicate" in line
               for line in lines)


def test_the_same_photo_under_two_labels_is_named_with_both_paths(trained_on_copies):
    _, log, lines = trained_on_copies
    (same,) = log["data_checks"]["exact_duplicates_across_labels"]
    assert same == [{"file": "darth_vader/which-one.jpg", "label": "darth vader"},
                    {"file": "elsa/which-one.jpg", "label": "elsa"}]
    assert any("the same photo under 2 labels: darth_vader/which-one.jpg (darth vader), "
               "elsa/which-one.jpg (elsa)" in line for line in lines)
    json.dumps(log, allow_nan=False)


def test_flowers_names_its_photo_filed_under_roses_and_tulips():
    image_set = discover(FLOWERS)
    digests = {path: content_hash(path) for files in image_set.files.values() for path in files}
    found = across_labels(image_set, image_set.files, digests)
    assert [{label for _, label in same} for same in found] == [{"roses", "tulips"}]


def test_a_labels_csv_gives_the_folders_split_and_model(copied_set, trained_on_copies, tmp_path):
    root, _ = copied_set
    base, log, _ = trained_on_copies
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"])
        for label in ("darth_vader", "elsa"):
            for path in sorted((root / label).iterdir()):
                writer.writerow([f"{label}/{path.name}", label])
    lines: list[str] = []
    from_csv = retrain(train_config(tmp_path, root, labels_csv=root / "labels.csv",
                                    bottleneck_dir=base / "bottlenecks", how_many_training_steps=200,
                                    testing_percentage=20, validation_percentage=20),
                       say=lines.append, warn=lines.append)
    (root / "labels.csv").unlink()
    assert any(line.startswith(f"Labels from {root / 'labels.csv'}") for line in lines)
    assert from_csv["split_digests"] == log["split_digests"]
    assert from_csv["final_test_accuracy"] == log["final_test_accuracy"]
    # The same layer (the graphs differ only in TensorFlow's names for their functions).
    assert len(final_layer(base / "retrained_graph.pb")) == 3  # weights, biases, temperature
    assert final_layer(tmp_path / "retrained_graph.pb") == final_layer(base / "retrained_graph.pb")


def final_layer(graph_path: Path) -> list[bytes]:
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(graph_path.read_bytes())
    return [node.attr["value"].tensor.SerializeToString() for node in graph.node
            if node.name.startswith("final_training_ops/") and node.op == "Const"]


def test_evaluate_counts_the_photos_it_is_shown_that_the_classifier_trained_on(
        copied_set, trained_on_copies, tmp_path, capsys):
    from tensorguess import cli

    _, families = copied_set
    base, log, _ = trained_on_copies
    training = set(log["split_digests"]["training"])
    seen = [family[0] for family in families if content_hash(family[0]) in training][:3]
    labelled = tmp_path / "labelled"
    for folder in ("darth_vader", "elsa"):
        (labelled / folder).mkdir(parents=True)
        for photo in sorted((SUPERHEROES / folder).iterdir())[40:45]:  # never trained on
            shutil.copy(photo, labelled / folder)
    for photo in seen:
        shutil.copy(photo, labelled / photo.parent.name / f"again-{photo.name}")  # identical
        image = ImageEnhance.Brightness(Image.open(photo).convert("RGB")).enhance(1.03)
        image.save(labelled / photo.parent.name / f"brighter-{photo.stem}.jpg", quality=90)
    assert cli.main(["evaluate", str(base), str(labelled), str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    leaks = report["leaks"]
    assert (leaks["identical"], leaks["near_identical"]) == (3, 3), leaks
    assert leaks["n_without"] == 10 and leaks["checked_features"]
    assert {f["file"].split("/")[1].split("-")[0] for f in leaks["files"]} == {"again", "brighter"}
    assert "Leaks: 6 of 16 images are photos the classifier trained on (3 identical, 3 near-identical" in out
