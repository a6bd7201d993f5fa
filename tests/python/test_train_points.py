"""train with labelled points: a points model trained, tested honestly and published whole."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import MOBILENET_V1, REPO, SHARED, SIGN_DIGITS

from tensorguess import model_dir
from tensorguess.config import TrainConfig
from tensorguess.model_dir import TrainLog

HANDS = SHARED / "datasets" / "keypoints" / "sign-digits-hands.json"
MOUSE = SHARED / "datasets" / "keypoints" / "openfield-mouse"


def hands_subset(path, count: int) -> None:
    """The first `count` photos of the shared hands file, as a COCO file of their own."""
    coco = json.loads(HANDS.read_text())
    images = sorted(coco["images"], key=lambda image: image["file_name"])[:count]
    kept = {image["id"] for image in images}
    coco["images"] = images
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    path.write_text(json.dumps(coco))


def config(folder, keypoints, image_dir, **overrides) -> TrainConfig:
    cfg = TrainConfig(image_dir=image_dir, keypoints=keypoints, tfhub_module=str(MOBILENET_V1),
                      bottleneck_dir=folder / "bottlenecks", report_dir=folder / "report",
                      output_graph=folder / model_dir.GRAPH, output_labels=folder / model_dir.LABELS,
                      saved_model_dir=folder / model_dir.SAVED_MODEL, train_log=folder / model_dir.TRAIN_LOG,
                      random_seed=3, point_epochs=6, augment=1)
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


@pytest.fixture(scope="module")
def hands_model(tmp_path_factory):
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("hands")
    hands_subset(folder / "hands.json", 160)
    lines = []
    log = train(config(folder, folder / "hands.json", SIGN_DIGITS), say=lines.append, warn=lines.append)
    return folder, log, lines


def test_hands_train_the_points_stage_alone_and_publish_a_points_model(hands_model):
    folder, log, lines = hands_model
    assert log["kind"] == "points" and log["locate"]["on"] is False
    assert any(line.startswith("Locate: off: the labelled points span") for line in lines)
    assert model_dir.read_kind(folder / model_dir.MODEL_KIND) == "points"
    assert not (folder / model_dir.LABELS).exists()  # a classes' file: points have their names file
    read = TrainLog.read(folder / model_dir.TRAIN_LOG)
    assert read.kind == "points" and read.data["names"][0] == "wrist" and len(read.data["names"]) == 21
    sizes = log["split_sizes"]
    assert sizes["training"] > sizes["validation"] > 0 and sizes["testing"] > 0
    assert sum(sizes.values()) == 160
    # No photo is in two splits, and the test is the split's own photos.
    digests = log["split_digests"]
    assert not set(digests["training"]) & set(digests["testing"])
    assert log["test"]["n"] == sizes["testing"]
    for name in (model_dir.GRAPH, model_dir.POINT_NAMES, model_dir.POINTS_SKELETON, model_dir.SAVED_MODEL):
        assert (folder / name).exists(), name


def test_the_test_report_holds_the_issue_s_numbers_and_they_are_learned(hands_model):
    folder, log, _ = hands_model
    report = json.loads((folder / "report" / "report.json").read_text())
    for key in ("mean_error_px", "mean_error_norm", "pck", "per_point", "auc"):
        assert key in report, key
    assert set(report["pck"]) == {"0.05", "0.1", "0.2"} and len(report["per_point"]) == 21
    # 6 epochs on 120 photos: far from the best, far better than the centre of the photo.
    assert report["mean_error_norm"] < 0.2, report["mean_error_norm"]
    assert report["pck"]["0.2"] > 0.5
    page = (folder / "report" / "report.html").read_text()
    assert "PCK curve" in page and page.count("<figure>") == min(12, report["n"])
    assert (folder / "report" / "pck_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_malformed_keypoint_file_trains_nothing_and_writes_nothing(tmp_path):
    from tensorguess.data.keypoint_rows import KeypointsError
    from tensorguess.train_points import train

    (tmp_path / "bad.json").write_text('{"images": [], "annotations": [')
    with pytest.raises(KeypointsError, match="bad.json"):
        train(config(tmp_path, tmp_path / "bad.json", SIGN_DIGITS), say=print, warn=print)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_the_mouse_is_located_then_its_points_read_on_the_crop(tmp_path):
    from tensorguess.train_points import train

    lines = []
    cfg = config(tmp_path, MOUSE / "CollectedData.csv", MOUSE, point_epochs=8, group_by=None)
    log = train(cfg, say=lines.append, warn=lines.append)
    assert log["locate"]["on"] is True and any(line.startswith("Locate: on:") for line in lines)
    assert log["locate"]["stage"]["epochs"] and log["points_stage"]["size"] == 224
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["locate_iou"] is not None and 0 <= report["locate_iou"] <= 1
    assert report["n"] == log["split_sizes"]["testing"] > 0


def test_train_dispatches_on_dir_keypoints_json(tmp_path):
    """`train DIR` with DIR/keypoints.json trains points; a flag it cannot honour for points is one line."""
    (tmp_path / "data").symlink_to(SIGN_DIGITS)
    hands_subset(tmp_path / "keypoints.json", 40)
    done = subprocess.run([sys.executable, "-m", "tensorguess", "train", str(tmp_path), "--tfhub_module",
                           str(MOBILENET_V1), "--export", "tflite"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "--export: exporting a points model" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / model_dir.GRAPH).exists()
