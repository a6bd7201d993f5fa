"""evaluate with a points model: a labelled keypoint set scored by the shipped graph, its report written.

A real points model (MobileNet v1, 160 hand photos, a few epochs) is trained once; the labelled sets
are COCO files of other hand photos, their points written in another order than the model's.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import MOBILENET_V1, SHARED, SIGN_DIGITS

from tensorguess import cli, model_dir, point_metrics
from tensorguess.config import TrainConfig

HANDS = SHARED / "datasets" / "keypoints" / "sign-digits-hands.json"
TRAINED = 160  # the first photos of the shared file, by name: the model's training set


def hands_coco(count_from: int, count: int, reverse: bool = False) -> dict:
    """`count` photos from `count_from` on (negative: from the end) of the shared hands file, by name,
    as COCO, their paths under `sign-digits/`; `reverse`: the points written in the reverse order."""
    coco = json.loads(HANDS.read_text())
    images = sorted(coco["images"], key=lambda image: image["file_name"])[count_from:][:count]
    kept = {image["id"] for image in images}
    for image in images:
        image["file_name"] = "sign-digits/" + image["file_name"]
    annotations = [a for a in coco["annotations"] if a["image_id"] in kept]
    category = coco["categories"][0]
    if reverse:
        k = len(category["keypoints"])
        category["keypoints"] = category["keypoints"][::-1]
        category["skeleton"] = [[k + 1 - a, k + 1 - b] for a, b in category["skeleton"]]
        for annotation in annotations:
            triplets = np.asarray(annotation["keypoints"]).reshape(k, 3)[::-1]
            annotation["keypoints"] = triplets.ravel().tolist()
    return {**coco, "images": images, "annotations": annotations}


def labelled_set(folder, coco: dict):
    """`folder` holding keypoints.json and a link to the shared photos its paths name."""
    folder.mkdir(parents=True)
    (folder / "sign-digits").symlink_to(SIGN_DIGITS)
    (folder / "keypoints.json").write_text(json.dumps(coco))
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("hands")
    source = labelled_set(folder / "trained", hands_coco(0, TRAINED))
    cfg = TrainConfig(image_dir=source, keypoints=source / "keypoints.json", tfhub_module=str(MOBILENET_V1),
                      bottleneck_dir=folder / "bottlenecks", report_dir=folder / "report",
                      output_graph=folder / model_dir.GRAPH, output_labels=folder / model_dir.LABELS,
                      saved_model_dir=folder / model_dir.SAVED_MODEL, train_log=folder / model_dir.TRAIN_LOG,
                      random_seed=3, point_epochs=4, augment=1)
    log = train(cfg, say=lambda line: None, warn=lambda line: None)
    return folder, log


@pytest.fixture(scope="module")
def held_out(model, tmp_path_factory):
    """40 hand photos the model never saw (the file's last ones, by name), points in reverse order."""
    return labelled_set(tmp_path_factory.mktemp("sets") / "held out", hands_coco(-40, 40, reverse=True))


def evaluate(capsys, *arguments) -> tuple[int, str, str]:
    code = cli.main(["evaluate", *map(str, arguments)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_of(out) -> dict:
    return json.loads((out / "report.json").read_text())


def by_hand(folder, labelled) -> dict:
    """point_metrics.summary of the model's own points on the set's photos, its truth read from the
    COCO file here: the model's graph run by the scorer, the file parsed without read_keypoints."""
    from tensorguess.score.points import PointsResult, open_points_model

    coco = json.loads((labelled / "keypoints.json").read_text())
    names = coco["categories"][0]["keypoints"]
    by_id = {a["image_id"]: np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
             for a in coco["annotations"]}
    with open_points_model(folder) as scorer:
        order = [names.index(name) for name in scorer.names]  # the file's column of each model point
        paths = [labelled / image["file_name"] for image in coco["images"]]
        results = list(scorer.score_files(paths))
        model_names = list(scorer.names)
    assert all(isinstance(result, PointsResult) for result in results)
    triplets = np.stack([by_id[image["id"]][order] for image in coco["images"]])
    visible = triplets[:, :, 2] > 0
    truth = np.where(visible[..., None], triplets[:, :, :2], np.nan)
    return point_metrics.summary(np.stack([r.points for r in results]), truth, visible, model_names)


def test_a_held_out_set_gives_the_issue_s_numbers_equal_to_the_scorer_s_points(model, held_out, capsys):
    folder, _ = model
    out = held_out.parent / "report"
    out.mkdir()
    (out / "confusion_matrix.png").write_text("mine")  # a classes report's name: not ours to write here
    code, printed, err = evaluate(capsys, folder, held_out, out)
    assert code == 0, err
    report = report_of(out)
    for key in ("mean_error_px", "mean_error_norm", "pck", "per_point", "auc"):
        assert report[key] is not None, key
    assert set(report["pck"]) == {"0.05", "0.1", "0.2"} and report["n"] == 40
    assert report["kind"] == "points" and "locate_iou" not in report  # one stage: nothing located
    expected = by_hand(folder, held_out)
    assert list(report["per_point"]) == list(expected["per_point"])  # the model's order, not the file's
    # The file's coordinates are read as float32 (data/keypoints), here as float64: 1e-7 px apart.
    for key in ("mean_error_px", "mean_error_norm", "auc", "points_counted"):
        assert report[key] == pytest.approx(expected[key], rel=1e-6), key
    assert report["pck"] == pytest.approx(expected["pck"], rel=1e-6)
    for name, numbers in expected["per_point"].items():
        assert report["per_point"][name]["mean_error_px"] == pytest.approx(numbers["mean_error_px"], rel=1e-6)
    lines = printed.splitlines()
    read = f"Points from {held_out / 'keypoints.json'} (coco): 40 photos, 21 points"
    assert lines[0].startswith(read), lines
    assert lines[1].startswith("Evaluation: mean error ") and "(N=40); hardest: " in lines[1], lines
    assert "Leaks: none of these photos is a photo the model trained on" in printed
    assert report["leaks"]["identical"] == 0 and report["leaks"]["n_without"] == 40
    assert f"Wrote the report into {out}: report.json, report.html, pck_curve.png" in printed
    page = (out / "report.html").read_text()
    assert page.count("<figure>") == 12 and "PCK curve" in page
    assert (out / "confusion_matrix.png").read_text() == "mine"


def test_the_saved_model_gives_the_graph_s_numbers(model, held_out, capsys):
    folder, _ = model
    for name, extra in (("graph", []), ("saved", ["--model", "saved_model"])):
        code, _, err = evaluate(capsys, folder, held_out, held_out.parent / name, *extra)
        assert code == 0, err
    graph, saved = report_of(held_out.parent / "graph"), report_of(held_out.parent / "saved")
    assert saved["model"].endswith("saved_model") and graph["model"].endswith(model_dir.GRAPH)
    assert saved["mean_error_px"] == pytest.approx(graph["mean_error_px"], abs=1e-3)


def test_the_photos_the_model_trained_on_are_counted_and_said(model, tmp_path, capsys):
    folder, log = model
    labelled = labelled_set(tmp_path / "again", hands_coco(0, 30))
    seen = set(log["split_digests"]["training"]) | set(log["split_digests"]["validation"])
    digests = [hashlib.sha1((labelled / image["file_name"]).read_bytes()).hexdigest()
               for image in json.loads((labelled / "keypoints.json").read_text())["images"]]
    expected = sum(digest in seen for digest in digests)
    assert 0 < expected < 30  # some of the first 30 fell in the test split
    code, printed, err = evaluate(capsys, folder, labelled, tmp_path / "report")
    assert code == 0, err
    leaks = report_of(tmp_path / "report")["leaks"]
    assert leaks["identical"] == expected == len(leaks["files"]) and leaks["n_without"] == 30 - expected
    assert leaks["checked_features"] is False  # identical content only
    [line] = [line for line in printed.splitlines() if line.startswith("Leaks:")]
    assert line.startswith(f"Leaks: {expected} of 30 photos are photos the model trained on"), line
    assert f"(N={30 - expected})" in line


def test_a_point_the_model_does_not_have_is_refused_in_one_line(model, tmp_path, capsys):
    folder, _ = model
    coco = hands_coco(-10, 10)
    coco["categories"][0]["keypoints"][0] = "wrist_centre"
    labelled = labelled_set(tmp_path / "renamed", coco)
    code, _, err = evaluate(capsys, folder, labelled, tmp_path / "report")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("tensor-guess: "), err
    assert str(labelled / "keypoints.json") in err and "'wrist_centre'" in err and "wrist, thumb_cmc" in err
    assert not (tmp_path / "report").exists()


def test_a_point_the_file_does_not_label_is_said_and_not_measured(model, tmp_path, capsys):
    folder, _ = model
    coco = hands_coco(-10, 10)
    category = coco["categories"][0]
    dropped = category["keypoints"].index("pinky_tip")
    del category["keypoints"][dropped]
    category["skeleton"] = [b for b in category["skeleton"] if dropped + 1 not in b]
    category["skeleton"] = [[a - (a > dropped + 1), b - (b > dropped + 1)] for a, b in category["skeleton"]]
    for annotation in coco["annotations"]:
        del annotation["keypoints"][3 * dropped:3 * dropped + 3]
    labelled = labelled_set(tmp_path / "fewer", coco)
    code, _, err = evaluate(capsys, folder, labelled, tmp_path / "report")
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "pinky_tip" in line]
    assert line == (f"tensor-guess: {labelled / 'keypoints.json'} labels 20 of the model's 21 points: "
                    "pinky_tip not labelled there, so not measured")
    report = report_of(tmp_path / "report")
    assert report["per_point"]["pinky_tip"]["points_counted"] == 0
    assert report["per_point"]["pinky_tip"]["mean_error_px"] is None and report["mean_error_px"] is not None
    assert report["notes"] == [line.removeprefix("tensor-guess: ")]


def test_the_folder_and_its_keypoints_json_give_the_same_report(model, held_out, capsys):
    folder, _ = model
    reports = []
    for labelled, out in ((held_out, "by folder"), (held_out / "keypoints.json", "by file")):
        code, _, err = evaluate(capsys, folder, labelled, held_out.parent / out)
        assert code == 0, err
        reports.append({k: v for k, v in report_of(held_out.parent / out).items() if k != "created"})
    assert reports[0] == reports[1]


def test_a_folder_without_keypoints_json_is_one_line(model, tmp_path, capsys):
    folder, _ = model
    (tmp_path / "photos").mkdir()
    code, _, err = evaluate(capsys, folder, tmp_path / "photos", tmp_path / "report")
    assert code == 1 and err.count("\n") == 1 and f"{tmp_path / 'photos'} holds no keypoints.json" in err


def test_a_report_folder_holding_someone_s_report_html_is_refused_before_any_work(model, held_out, capsys):
    folder, _ = model
    out = held_out.parent / "theirs"
    out.mkdir()
    (out / "report.html").write_text("my page")
    code, printed, err = evaluate(capsys, folder, held_out, out)
    assert code == 1 and not printed
    assert err == (f"tensor-guess: {out} already holds report.html that tensor-guess did not write; choose "
                   "another report folder (nothing was changed)\n")
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert (out / "report.html").read_text() == "my page"


def test_a_two_stage_model_s_locate_iou_is_that_of_the_boxes_it_read(tmp_path, capsys):
    """The mouse, located then read on the crop: evaluate's locate_iou is the mean IoU of the box the
    graph read with the labelled points' crop (crop_box with the model's margin and min_side)."""
    from tensorguess.data.keypoints import read_keypoints
    from tensorguess.head.points_model import crop_box
    from tensorguess.score.points import open_points_model
    from tensorguess.train_points import train

    mouse = SHARED / "datasets" / "keypoints" / "openfield-mouse"
    cfg = TrainConfig(image_dir=mouse, keypoints=mouse / "CollectedData.csv", tfhub_module=str(MOBILENET_V1),
                      bottleneck_dir=tmp_path / "bottlenecks", report_dir=tmp_path / "report",
                      output_graph=tmp_path / model_dir.GRAPH, output_labels=tmp_path / model_dir.LABELS,
                      saved_model_dir=tmp_path / model_dir.SAVED_MODEL,
                      train_log=tmp_path / model_dir.TRAIN_LOG, random_seed=3, point_epochs=10, augment=1)
    log = train(cfg, say=lambda line: None, warn=lambda line: None)
    assert log["locate"]["on"] is True
    code, printed, err = evaluate(capsys, tmp_path, mouse / "CollectedData.csv", tmp_path / "evaluation")
    assert code == 0, err
    report = report_of(tmp_path / "evaluation")
    assert report["n"] == 87 and ", locate IoU " in printed
    truth = read_keypoints(mouse / "CollectedData.csv", warn=print, say=lambda line: None)
    with open_points_model(tmp_path) as scorer:
        boxes = [result.box for result in scorer.score_files([i.path for i in truth.instances])]
    ious = [point_metrics.box_iou(box, crop_box(i.points, i.labelled, i.width, i.height,
                                                log["locate"]["margin"], log["locate"]["min_side"]))
            for box, i in zip(boxes, truth.instances, strict=True)]
    assert 0 < report["locate_iou"] == pytest.approx(float(np.mean(ious)), rel=1e-9)
    seen = report["leaks"]
    assert seen["identical"] == log["split_sizes"]["training"] + log["split_sizes"]["validation"]


def test_train_s_test_numbers_are_the_shipped_graph_s_on_the_same_photos(model, tmp_path, capsys):
    """train reads its test split as the exported graph does (float pixels, float maps): evaluate of
    those very photos, through the graph, gives train's numbers."""
    folder, log = model
    testing = set(log["split_digests"]["testing"])
    coco = hands_coco(0, TRAINED)
    def digest(image) -> str:
        return hashlib.sha1((SIGN_DIGITS / image["file_name"].split("/", 1)[1]).read_bytes()).hexdigest()

    coco["images"] = [image for image in coco["images"] if digest(image) in testing]
    kept = {image["id"] for image in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    assert len(coco["images"]) == log["test"]["n"] > 0
    labelled = labelled_set(tmp_path / "test split", coco)
    code, _, err = evaluate(capsys, folder, labelled, tmp_path / "report")
    assert code == 0, err
    report = report_of(tmp_path / "report")
    for key in ("mean_error_px", "mean_error_norm", "auc"):
        assert report[key] == pytest.approx(log["test"][key], rel=1e-3, abs=1e-4), key
