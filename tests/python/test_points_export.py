"""A points model exported as one graph (bytes -> box and points in photo pixels) computes what the
Python path computes, on real hand photos and mouse frames; its crop is the numpy reference's;
the SavedModel equals the .pb; guess prints it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import MOBILENET_V1, REPO, SHARED, SIGN_DIGITS

from tensorguess import model_dir
from tensorguess.data.images import Skipped, read_image
from tensorguess.data.keypoints import read_keypoints
from tensorguess.export.formats import FILES
from tensorguess.export.points_graph import crop_boxes, export_points_model, points_graph
from tensorguess.features.modules import resize_image, resolve
from tensorguess.features.spatial import SpatialTrunk
from tensorguess.head.points_model import PointsModel, PointsStage, crop_box, crop_squares
from tensorguess.head.points_net import DirectHead, HeatmapHead
from tensorguess.head.points_train import PointSet, PointsSchedule, train_points_head
from tensorguess.score.graph_check import refusal
from tensorguess.score.points import PointsResult, open_points_model
from tensorguess.score.points_guess import document, lines

HANDS = SHARED / "datasets" / "keypoints" / "sign-digits-hands.json"
MOUSE = SHARED / "datasets" / "keypoints" / "openfield-mouse"
HAND_PHOTO = SIGN_DIGITS / "0" / "IMG_1118.JPG"
MOUSE_FRAME = MOUSE / "img0000.png"  # 640x480: the mouse fills about 1% of it
TOLERANCE_PX = 0.02  # the budget was 0.5 px; the graph and the Python path differ by ~0.002


@pytest.fixture(scope="module")
def v1():
    return resolve(str(MOBILENET_V1))


@pytest.fixture(scope="module")
def trunks(v1):
    spec, loaded = v1
    return {size: SpatialTrunk(spec, loaded, size) for size in (160, 224)}


@pytest.fixture(scope="module")
def hands():
    points = read_keypoints(HANDS, SIGN_DIGITS, warn=lambda line: None, say=lambda line: None)
    return points, [i for i in points.instances if i.path != HAND_PHOTO][:48]


@pytest.fixture(scope="module")
def hand_head(trunks, hands):
    """A heatmap head on 160 px maps, trained 3 epochs on 40 hand photos (its points spread over
    the hand, so the crop it leads to is a real one), validated on 8."""
    _, instances = hands
    images = np.stack([resize_image(read_image(i.path), 160).numpy() for i in instances])
    maps = trunks[160].maps(images)
    points = np.stack([i.points / [i.width, i.height] for i in instances]).astype(np.float32)
    labelled = np.stack([i.labelled for i in instances])
    head = HeatmapHead(maps.shape[-1], points.shape[1], seed=3)
    train_points_head(head, PointSet(maps[:40], points[:40], labelled[:40]),
                      PointSet(maps[40:], points[40:], labelled[40:]),
                      PointsSchedule(epochs=3, batch_size=8, patience=0))
    return head


@pytest.fixture(scope="module")
def models(trunks, hands, hand_head):
    """One stage (the hand head on the whole photo) and two: it locates, then an untrained direct
    head (no confidence: nan) reads a 224 px crop."""
    keypoints, _ = hands
    names, tap = list(keypoints.names), trunks[160].tap.node
    whole = PointsStage(hand_head, 160, tap)
    crop_head = DirectHead(trunks[224].shape[-1], len(names), seed=5)
    common = {"names": names, "skeleton": list(keypoints.skeleton), "flip_pairs": []}
    return {"one-stage": PointsModel(**common, points=whole),
            "two-stage": PointsModel(**common, points=PointsStage(crop_head, 224, tap), locate=whole,
                                     min_side=0.15)}


@pytest.fixture(scope="module")
def graphs(v1, models):
    spec, loaded = v1
    return {name: points_graph(spec, loaded, model) for name, model in models.items()}


def python_path(trunks, model: PointsModel, photo: np.ndarray):
    """(points [K,2], confidence [K], box [4]) in photo pixels, as training's code computes them."""
    height, width = photo.shape[:2]
    whole = model.locate or model.points
    prediction = whole.head.predict(trunks[whole.size](resize_image(photo, whole.size)[None]))
    found = prediction.points.numpy()[0] * [width, height]
    if model.locate is None:
        box = crop_box(found, np.zeros(len(found), bool), width, height)  # the photo's square
        return found, prediction.confidence.numpy()[0], np.array(box)
    box = crop_box(found, np.ones(len(found), bool), width, height, model.margin, model.min_side)
    pixels = tf.image.convert_image_dtype(photo, tf.float32)[None]
    crop = crop_squares(pixels, tf.constant([box], tf.float32), model.points.size)
    prediction = model.points.head.predict(trunks[model.points.size](crop))
    side = box[2] - box[0]
    points = np.array(box[:2]) + prediction.points.numpy()[0] * side
    return points, prediction.confidence.numpy()[0], np.array(box)


def run_graph(graph_def, photo_path: Path):
    """The graph fed the photo's bytes: (points [K,2], confidence [K], box [4])."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        out = session.run([f"{name}:0" for name in (model_dir.POINTS_TENSOR, model_dir.CONFIDENCE_TENSOR,
                                                    model_dir.BOX_TENSOR)],
                          {f"{model_dir.INPUT_BYTES}:0": photo_path.read_bytes()})
    return tuple(value[0] for value in out)


@pytest.mark.parametrize("photo", [HAND_PHOTO, MOUSE_FRAME], ids=["hand", "mouse"])
@pytest.mark.parametrize("name", ["one-stage", "two-stage"])
def test_the_graph_equals_the_python_path(trunks, models, graphs, name, photo):
    assert refusal(graphs[name], "graph") is None  # runs untrusted: every op is pure computation
    points, confidence, box = run_graph(graphs[name], photo)
    expected_points, expected_confidence, expected_box = python_path(trunks, models[name], read_image(photo))
    height, width = read_image(photo).shape[:2]
    assert points.shape == (21, 2) and box.shape == (4,)
    np.testing.assert_allclose(box, expected_box, atol=0.01)
    assert np.abs(points - expected_points).max() < TOLERANCE_PX
    np.testing.assert_allclose(confidence, expected_confidence, atol=1e-3)  # nan where both are
    if name == "one-stage":
        longer = max(width, height)
        np.testing.assert_allclose(box, [(width - longer) / 2, (height - longer) / 2,
                                         (width + longer) / 2, (height + longer) / 2])
    else:  # the crop is a real one: a square inside the frame's square, past min_side
        side = box[2] - box[0]
        assert side == pytest.approx(box[3] - box[1], abs=1e-3) and 0.15 * width - 1e-3 <= side < width


def test_the_graph_crop_box_is_crop_box():
    rng = np.random.default_rng(4)
    points = rng.uniform(-20, 660, (5, 4, 2)).astype(np.float32)
    points[1, 2] = np.nan  # a point the box leaves out
    points[2] = np.nan  # no point: the photo's square
    points[3] = points[3, :1]  # one point, four times: min_side's and the 1 px floor's
    for margin, min_side in ((0.25, 0.0), (0.1, 0.3)):
        got = crop_boxes(tf.constant(points), tf.constant(640.0), tf.constant(480.0), margin, min_side)
        got = got.numpy()
        for row in range(len(points)):
            expected = crop_box(points[row], np.ones(4, bool), 640, 480, margin, min_side)
            np.testing.assert_allclose(got[row], expected, atol=1e-3)


def bilinear_reference(image: np.ndarray, box, size: int) -> np.ndarray:
    """The crop by its definition: crop pixel (i, j)'s centre reads the photo at the continuous
    point x0 + (j + 0.5) side / size, y0 + (i + 0.5) side / size, bilinear over pixel centres,
    0 outside the photo."""
    x0, y0, x1, _ = box
    scale = (x1 - x0) / size
    height, width = image.shape[:2]
    out = np.zeros((size, size, image.shape[2]))
    for i in range(size):
        for j in range(size):
            u, v = x0 + (j + 0.5) * scale - 0.5, y0 + (i + 0.5) * scale - 0.5  # in pixel-centre units
            left, top = int(np.floor(u)), int(np.floor(v))
            for row, wy in ((top, 1 - (v - top)), (top + 1, v - top)):
                for column, wx in ((left, 1 - (u - left)), (left + 1, u - left)):
                    if 0 <= row < height and 0 <= column < width:
                        out[i, j] += wy * wx * image[row, column]
    return out


@pytest.mark.parametrize("box", [(5.3, -4.2, 35.3, 25.8), (-10.0, -10.0, 50.0, 50.0),
                                 (12.5, 7.25, 20.5, 15.25)],
                         ids=["past-the-top", "around-the-photo", "inside-upsampled"])
def test_the_crop_is_the_numpy_reference(box):
    image = np.random.default_rng(1).uniform(0, 1, (30, 40, 3)).astype(np.float32)
    got = crop_squares(tf.constant(image[None]), tf.constant([box], tf.float32), 16).numpy()[0]
    np.testing.assert_allclose(got, bilinear_reference(image, box, 16), atol=1e-5)


def test_a_drawn_dot_lands_at_its_crop_pixel():
    """A one-pixel dot at photo pixel (412, 250), its centre (412.5, 250.5), in a 640x480 frame; a crop
    of side 112 from (380.25, 210.75) at 224 px (2 crop pixels a photo pixel): crop pixel j's centre
    reads the photo at 380.25 + (j + 0.5) / 2, so the dot is crop pixel (x 64, y 79), whole, and
    half of each neighbour. Then a smooth blob at a continuous point: its centroid in the crop maps
    back onto the point."""
    frame = np.zeros((480, 640, 1), np.float32)
    frame[250, 412] = 1.0
    crop = crop_squares(tf.constant(frame[None]), tf.constant([[380.25, 210.75, 492.25, 322.75]]), 224)
    crop = crop.numpy()[0, :, :, 0]
    assert crop[79, 64] == pytest.approx(1.0) and np.argwhere(crop > 0.75).tolist() == [[79, 64]]
    np.testing.assert_allclose([crop[78, 64], crop[80, 64], crop[79, 63], crop[79, 65]], 0.5, atol=1e-6)
    assert crop.sum() == pytest.approx(4.0)  # 2 x 2 crop pixels a photo pixel: nothing lost, nothing added
    # A smooth blob at a continuous point: its centroid in the crop maps back onto the point.
    point = np.array([300.3, 200.7])
    columns, rows = np.meshgrid(np.arange(640) + 0.5, np.arange(480) + 0.5)
    blob = np.exp(-((columns - point[0]) ** 2 + (rows - point[1]) ** 2) / (2 * 3.0 ** 2))
    box = crop_box(point[None], np.ones(1, bool), 640, 480, min_side=0.2)  # side 128 around the point
    crop = crop_squares(tf.constant(blob[None, ..., None], tf.float32), tf.constant([box], tf.float32), 224)
    crop = crop.numpy()[0, :, :, 0]
    centres = (np.arange(224) + 0.5) * (box[2] - box[0]) / 224
    centroid = [box[0] + (crop.sum(0) * centres).sum() / crop.sum(),
                box[1] + (crop.sum(1) * centres).sum() / crop.sum()]
    np.testing.assert_allclose(centroid, point, atol=0.01)


@pytest.fixture(scope="module")
def exported(v1, models, tmp_path_factory):
    """The two-stage model written as train would write it into DIR (graph, names, skeleton,
    SavedModel, and the kind)."""
    spec, loaded = v1
    folder = tmp_path_factory.mktemp("points_model")
    export_points_model(spec, loaded, models["two-stage"], folder / model_dir.GRAPH,
                        folder / model_dir.POINT_NAMES, folder / model_dir.SAVED_MODEL)
    (folder / model_dir.MODEL_KIND).write_text(f"{model_dir.POINTS}\n")
    return folder


def test_the_files_and_the_saved_model_equal_the_graph(exported, models, tmp_path):
    names = models["two-stage"].names
    assert (exported / model_dir.POINT_NAMES).read_text().splitlines() == names
    skeleton = json.loads((exported / model_dir.POINTS_SKELETON).read_text())
    assert skeleton["names"] == names and skeleton["skeleton"][0] == list(models["two-stage"].skeleton[0])
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo\n")
    paths = [HAND_PHOTO, not_a_photo, MOUSE_FRAME, MOUSE / "img0001.png"]
    results = {}
    for model in ("pb", "saved_model"):
        with open_points_model(exported, model) as scorer:
            assert scorer.names == names
            results[model] = list(scorer.score_files(paths, batch_size=4))
    for pb, saved in zip(results["pb"], results["saved_model"], strict=True):
        if isinstance(pb, Skipped):  # the file that is not a photo: one Skipped, not a crash
            assert isinstance(saved, Skipped) and pb.path == not_a_photo and "not an image" in pb.reason
            continue
        assert isinstance(pb, PointsResult) and isinstance(saved, PointsResult)
        np.testing.assert_allclose(saved.points, pb.points, atol=1e-3)
        np.testing.assert_allclose(saved.box, pb.box, atol=1e-3)
    # The two mouse frames ran as one batch of one size: each equals the graph fed its bytes alone
    # (a batch's convolutions sum in another order: a few thousandths of a pixel).
    expected, _, box = run_graph(points_graph_of(exported), MOUSE / "img0001.png")
    np.testing.assert_allclose(results["pb"][3].points, expected, atol=0.01)
    np.testing.assert_allclose(results["pb"][3].box, box, atol=0.01)
    # The serving signature takes the bytes, as the .pb's INPUT_BYTES does.
    serving = tf.saved_model.load(str(exported / model_dir.SAVED_MODEL)).signatures["serving_default"]
    out = serving(image_bytes=tf.constant(HAND_PHOTO.read_bytes()))
    np.testing.assert_allclose(out["points"].numpy()[0], results["pb"][0].points, atol=1e-3)
    assert [name.decode() for name in out["names"].numpy()] == names


def test_the_lines_of_a_result():
    result = PointsResult(Path("hand.jpg"), np.array([[52.14, 80.26], [10.0, 20.0]]),
                          np.array([0.934, np.nan]), np.array([-5.0, 0.0, 95.0, 100.0]))
    assert lines(result, ["wrist", "thumb tip"]) == [
        "box -5.0 0.0 100.0 100.0 0.93", "wrist 52.1 80.3 0.93", "thumb tip 10.0 20.0 -"]
    found = document(result, ["wrist", "thumb tip"])
    assert found["box"] == [-5.0, 0.0, 100.0, 100.0] and found["score"] == pytest.approx(0.934)
    assert found["keypoints"][1] == {"name": "thumb tip", "x": 10.0, "y": 20.0, "score": None}
    no_score = PointsResult(Path("m.png"), np.zeros((1, 2)), np.array([np.nan]), np.array([0, 0, 4.0, 4.0]))
    assert lines(no_score, ["snout"])[0] == "box 0.0 0.0 4.0 4.0 -"
    assert document(no_score, ["snout"])["score"] is None


def points_graph_of(folder: Path):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((folder / model_dir.GRAPH).read_bytes())
    return graph_def


def guess(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "tensorguess", "guess", *arguments], capture_output=True,
                          text=True, env=environment, timeout=300, check=False)


def test_guess_prints_the_box_and_one_line_a_point(exported, models, tmp_path):
    with open_points_model(exported) as scorer:
        (expected,) = scorer.score_files([MOUSE_FRAME])
    done = guess(str(exported), str(MOUSE_FRAME))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    x0, y0, x1, y1 = expected.box
    assert lines[0] == f"box {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f} -"
    (x, y) = expected.points[0]
    assert len(lines) == 22 and lines[1] == f"wrist {x:.1f} {y:.1f} -"
    assert lines[21].startswith("pinky_tip ") and lines[21].endswith(" -")  # the direct head gives no score
    # --json, with the SavedModel, two photos and a file that is not one: one line on stderr, status 1.
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("not a photo\n")
    done = guess(str(exported), str(MOUSE_FRAME), str(not_a_photo), "--json", "--model", "saved_model")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "notes.png" in done.stderr
    first, second = json.loads(done.stdout)
    assert first["image"] == str(MOUSE_FRAME) and second == {"image": str(not_a_photo),
                                                              "error": second["error"]}
    assert [p["name"] for p in first["keypoints"]] == models["two-stage"].names
    assert first["keypoints"][0]["score"] is None and first["score"] is None
    np.testing.assert_allclose([[p["x"], p["y"]] for p in first["keypoints"]], expected.points, atol=1e-3)
    np.testing.assert_allclose(first["box"], [x0, y0, x1 - x0, y1 - y0], atol=1e-3)


@pytest.fixture(scope="module")
def trained_points(tmp_path_factory):
    """A real points model (train's own code, 48 hand photos, 3 epochs: the whole-photo stage), then
    `export DIR` run as the command runs it: (DIR, its printed lines)."""
    from test_train_points import config, hands_subset

    from tensorguess import cli
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("points_formats")
    hands_subset(folder / "hands.json", 48)
    train(config(folder, folder / "hands.json", SIGN_DIGITS, point_epochs=3), say=lambda line: None,
          warn=lambda line: None)
    lines: list[str] = []
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    printed = StringIO()
    with redirect_stdout(printed), redirect_stderr(printed):
        status = cli.main(["export", str(folder)])
    lines = printed.getvalue().splitlines()
    assert status == 0, lines
    return folder, lines


def held_out_photos(folder: Path) -> list[Path]:
    from tensorguess.deploy_points import split_photos

    log = model_dir.TrainLog.read(folder / model_dir.TRAIN_LOG)
    return split_photos(log, folder / model_dir.TRAIN_LOG, warn=lambda line: None)["testing"]


def stage_side(folder: Path) -> int:
    return model_dir.TrainLog.read(folder / model_dir.TRAIN_LOG).data["points_stage"]["size"]


def lite_points(path: Path, photo: np.ndarray, size: int) -> dict:
    """The .tflite run by LiteRT (ai_edge_litert) on the photo squashed as guess squashes it."""
    from tensorguess.export.litert import interpreter_class, quantized

    runner = interpreter_class()(model_path=str(path)).get_signature_runner()
    detail = runner.get_input_details()["image"]
    return runner(image=quantized(resize_image(photo, size).numpy()[None], detail))


def test_export_writes_every_format_of_a_points_model_and_says_how_far_int8_moves_them(trained_points):
    folder, lines = trained_points
    for name in ("tflite", "tflite-int8", "coreml"):
        assert (folder / FILES[name]).exists(), name
    assert (folder / model_dir.SAVED_MODEL / "saved_model.pb").exists()
    header = lines.index("format         mean      max   within 1%")
    assert lines[header - 1].startswith("Points per format against the .pb, on ")
    table = {row[0]: row for row in map(str.split, lines[header + 1:]) if row}
    assert float(table["tflite"][1].rstrip("%")) < 0.01  # float: the .pb's network, to rounding
    # int8 against the float points on the test split (photos never trained on), as a share of the
    # box side; past 1% export warns, naming the file (docs/benchmarks.md, section 17: a model this
    # little trained has flat heatmaps, whose soft-argmax int8 moves most).
    worst = float(table["tflite-int8"][2].rstrip("%"))
    warned = [line for line in lines if line.startswith("WARNING: tflite-int8 (retrained_graph_int8.tflite)")]
    assert bool(warned) == (worst > 1.0), lines
    assert table["coreml"][1:] == ["not", "scored:", "Core", "ML", "runs", "on", "macOS", "only"]


@pytest.mark.parametrize("name", ["tflite", "tflite-int8"])
def test_litert_runs_the_points_files_and_they_say_what_they_hold(trained_points, name):
    """Both files run in LiteRT and give guess's points (x W, y H) on held-out photos; each carries
    TFLite metadata and the point names packed inside."""
    from tensorguess.export.tflite_metadata import read_metadata

    folder, _ = trained_points
    data = (folder / FILES[name]).read_bytes()
    metadata = read_metadata(data)
    assert metadata is not None and metadata[4:8] == b"M001" and b"tensor-guess points model" in metadata
    import zipfile
    from io import BytesIO

    names = (folder / model_dir.POINT_NAMES).read_text().splitlines()
    with zipfile.ZipFile(BytesIO(data)) as archive:
        assert archive.read("point_names.txt").decode().splitlines() == names
    photos = held_out_photos(folder)[:3]
    with open_points_model(folder) as scorer:
        expected = list(scorer.score_files(photos))
    for photo, result in zip(photos, expected, strict=True):
        image = read_image(photo)
        height, width = image.shape[:2]
        out = lite_points(folder / FILES[name], image, stage_side(folder))
        points = out["points"][0] * [width, height]
        moved = np.hypot(*(points - result.points).T)
        if name == "tflite":  # the .pb's network: the same points, to rounding
            assert moved.max() < 0.05, (name, photo)
        else:  # int8 on this little-trained model: see the table's test above
            assert moved.mean() < 0.25 * max(width, height), (name, photo)
        np.testing.assert_allclose(out["box"][0], [0, 0, 1, 1])
        assert out["confidence"].shape == (1, len(names))


def test_core_ml_of_a_points_model_has_the_points_and_box_and_the_names(trained_points):
    import coremltools as ct

    folder, _ = trained_points
    spec = ct.utils.load_spec(str(folder / FILES["coreml"]))
    image = spec.description.input[0]
    side = stage_side(folder)
    assert (image.name, image.type.imageType.width, image.type.imageType.height) == ("image", side, side)
    assert sorted(output.name for output in spec.description.output) == ["box", "confidence", "points"]
    metadata = spec.description.metadata.userDefined
    assert json.loads(metadata["point_names"]) == (folder / model_dir.POINT_NAMES).read_text().splitlines()
    assert json.loads(metadata["skeleton"])[0] == [0, 1]
    shapes = {output.name: list(output.type.multiArrayType.shape) for output in spec.description.output}
    assert shapes["points"][-1] == 2


@pytest.fixture(scope="module")
def two_stage_files(exported, hands, tmp_path_factory):
    """The two-stage model exported to every format by `export DIR`, as the command runs it, with the
    train_log.json a training would have written: its keypoint file (the hand photos' first 64), the
    40 photos its locate head trained on as the training split (int8 calibrates on them) and those of
    the 64 it never saw as the test split (the table compares on them). (DIR, printed lines, test photos.)"""
    import shutil
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from test_train_points import hands_subset

    from tensorguess import cli
    from tensorguess.data.images import content_hash

    folder = tmp_path_factory.mktemp("two_stage_formats") / "model"
    shutil.copytree(exported, folder)
    hands_subset(folder / "hands.json", 64)
    listed = read_keypoints(folder / "hands.json", SIGN_DIGITS, warn=lambda line: None, say=lambda line: None)
    trained = {i.path for i in hands[1][:48]}
    unseen = sorted({i.path for i in listed.instances} - trained)
    log = {"kind": "points", "flags": {"image_dir": str(SIGN_DIGITS)},
           "keypoints": {"source": str(folder / "hands.json")},
           "split_digests": {"training": [content_hash(i.path) for i in hands[1][:40]],
                             "testing": [content_hash(path) for path in unseen]},
           "skeleton": [[0, 1]]}
    (folder / model_dir.TRAIN_LOG).write_text(json.dumps(log))
    printed = StringIO()
    with redirect_stdout(printed), redirect_stderr(printed):
        status = cli.main(["export", str(folder)])
    lines = printed.getvalue().splitlines()
    assert status == 0, lines
    return folder, lines, unseen


def test_a_model_that_locates_first_exports_each_stage_and_the_crop_rule(two_stage_files, models):
    """TFLite float and int8 and Core ML: a file a stage (LiteRT and Core ML cannot crop between them)
    and points_crop.json, what a host needs to crop as the graph does."""
    import coremltools as ct

    folder, lines, _ = two_stage_files
    for name in ("tflite", "tflite-int8", "coreml"):
        assert (folder / FILES[name]).exists() and (folder / model_dir.LOCATE_EXPORTS[name]).exists(), name
    rule = json.loads((folder / model_dir.POINTS_CROP).read_text())
    model = models["two-stage"]
    assert rule == {"margin": model.margin, "min_side": pytest.approx(model.min_side), "locate_size": 160,
                    "points_size": 224}
    for path, side in ((folder / model_dir.LOCATE_EXPORTS["coreml"], 160), (folder / FILES["coreml"], 224)):
        image = ct.utils.load_spec(str(path)).description.input[0]
        assert (image.type.imageType.width, image.type.imageType.height) == (side, side), path
    header = lines.index("format         mean      max   within 1%")
    table = {row[0]: row for row in map(str.split, lines[header + 1:]) if row}
    assert float(table["tflite"][2].rstrip("%")) < 0.01, lines  # both float files and the host's crop
    assert "tflite-int8" in table


@pytest.mark.parametrize("name", ["tflite", "tflite-int8"])
def test_guess_runs_both_stages_files_with_the_crop_on_the_host(two_stage_files, name):
    """`--model tflite` / `tflite-int8` on a two-stage model: the locate file, crop_box and the numpy
    crop, then the points file, give the .pb's box and points (float: to 0.05 px; int8: a looser
    bound, its distance is what export's table and bench/points_int8.py measure)."""
    folder, _, unseen = two_stage_files
    photos = [*unseen[:4], MOUSE_FRAME]
    results = {}
    for model in ("pb", name):
        with open_points_model(folder, model) as scorer:
            results[model] = list(scorer.score_files(photos))
    for pb, lite in zip(results["pb"], results[name], strict=True):
        side = pb.box[2] - pb.box[0]
        if name == "tflite":
            np.testing.assert_allclose(lite.box, pb.box, atol=0.05)
            np.testing.assert_allclose(lite.points, pb.points, atol=0.05)
        else:
            assert np.hypot(*(lite.points - pb.points).T).mean() < 0.25 * side, lite.path
    done = guess(str(folder), str(MOUSE_FRAME), "--json", "--model", name)
    assert done.returncode == 0, done.stderr
    (found,) = json.loads(done.stdout)
    np.testing.assert_allclose([[p["x"], p["y"]] for p in found["keypoints"]], results[name][-1].points,
                               atol=1e-3)


def test_the_host_crop_is_the_graph_crop():
    """score/points_lite.crop_square (numpy) equals crop_squares (ImageProjectiveTransformV3) on a real
    frame, for boxes inside, across the border and larger than the photo: bilinear, black outside."""
    from tensorguess.score.points_lite import crop_square

    photo = read_image(MOUSE_FRAME).astype(np.float32) / 255
    for box in ([-50.3, 400.2, 120.9, 571.4], [100.25, 80.5, 228.75, 209.0], [600.1, -30.2, 700.5, 70.2],
                [-100.0, -100.0, 800.0, 800.0], [10.0, 10.0, 12.0, 12.0]):
        expected = crop_squares(tf.constant(photo[None]), tf.constant([box], tf.float32), 224).numpy()[0]
        np.testing.assert_allclose(crop_square(photo, np.array(box, np.float32), 224), expected, atol=1e-4)


def test_a_moved_keypoint_file_still_exports_float_and_int8_says_why_not(trained_points, tmp_path, capsys):
    """The keypoint file the training read is gone (moved, or not mounted): the float file is written
    with one warning line naming it; int8, which calibrates on its photos, is refused in one line."""
    import shutil

    from tensorguess import cli

    folder, _ = trained_points
    moved = tmp_path / "model"
    moved.mkdir()
    for name in (model_dir.GRAPH, model_dir.POINT_NAMES, model_dir.POINTS_SKELETON, model_dir.MODEL_KIND):
        shutil.copy(folder / name, moved / name)
    shutil.copytree(folder / model_dir.SAVED_MODEL, moved / model_dir.SAVED_MODEL)
    log = json.loads((folder / model_dir.TRAIN_LOG).read_text())
    log["keypoints"]["source"] = str(tmp_path / "gone.json")
    (moved / model_dir.TRAIN_LOG).write_text(json.dumps(log))
    assert cli.main(["export", str(moved), "--format", "tflite"]) == 0
    captured = capsys.readouterr()
    assert "gone.json" in captured.err and captured.err.count("\n") == 1, captured.err
    assert (moved / FILES["tflite"]).exists()
    assert cli.main(["export", str(moved), "--format", "tflite-int8"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "gone.json" in err[0] and "int8 is calibrated" in err[-1] and len(err) == 2, err
    assert not (moved / FILES["tflite-int8"]).exists()


def test_serve_model_tflite_tracks_a_two_stage_model_in_its_files(two_stage_files):
    """serve --model tflite on a two-stage model: a camera frame is answered as the graph answers it,
    with the next frame's box by the files' own crop rule (points_crop.json); a frame sent with that
    box is read in it, by the points file alone, as the graph reads it in that box."""
    from PIL import Image

    from tensorguess.serve.answers import Frame, PointsAnswers

    folder, _, unseen = two_stage_files
    pixels = np.asarray(Image.fromarray(read_image(unseen[0])).resize((320, 240)))
    with open_points_model(folder, "tflite") as lite, open_points_model(folder, "pb") as graph:
        located = PointsAnswers(lite).score_frames([Frame(pixels)])[0]
        by_graph = PointsAnswers(graph).score_frames([Frame(pixels)])[0]
        assert np.allclose(_xy(located), _xy(by_graph), atol=0.05)
        box = tuple(located["next_box"])
        answers = PointsAnswers(lite)
        answers.check_frame(Frame(pixels, box))  # a box is taken: the files can skip locating
        tracked = answers.score_frames([Frame(pixels, box)])[0]
        in_graph = graph.run_in_boxes(pixels[None], np.asarray([box], np.float32))
        assert np.allclose(_corners(tracked["box"]), box, atol=0.01)
        assert np.allclose(_xy(tracked), in_graph[0][0], atol=0.05)


def _xy(answer: dict) -> list[list[float]]:
    return [[point["x"], point["y"]] for point in answer["keypoints"]]


def _corners(box_xywh) -> list[float]:
    x, y, width, height = box_xywh
    return [x, y, x + width, y + height]


def test_the_camera_runs_a_points_model_s_float_files_of_this_graph_and_the_graph_when_stale(
        two_stage_files, v1, trunks, models, tmp_path):
    """serve's default (--model pb) on a two-stage model whose float files export.sh wrote: the camera's
    frames run the files (serve says so; /healthz names their sha1), located and tracked as the graph
    would answer; files of another graph (a training after the export), or none, leave the graph, and
    the line says why."""
    import shutil

    from PIL import Image

    from tensorguess.serve.answers import Frame, answers_for
    from tensorguess.serve.camera_model import points_camera_model

    folder, _, unseen = two_stage_files
    pixels = np.asarray(Image.fromarray(read_image(unseen[1])).resize((320, 240)))
    with open_points_model(folder, "pb") as graph, open_points_model(folder, "tflite") as lite:
        camera = points_camera_model(graph, folder, "pb")
        try:
            assert camera.said == f"Camera frames: {folder / FILES['tflite']} (TFLite float, of this graph)"
            assert camera.digest == lite.digest != graph.digest
            answers = answers_for(graph, camera)
            assert answers.frames is camera.points and type(camera.points.run).__name__ == "LiteRun"
            located = answers.score_frames([Frame(pixels)])[0]
            np.testing.assert_allclose(_xy(located), graph.run(pixels[None])[0][0], atol=0.05)
            box = tuple(located["next_box"])
            tracked = answers.score_frames([Frame(pixels, box)])[0]
            in_graph = graph.run_in_boxes(pixels[None], np.float32([box]))
            np.testing.assert_allclose(_xy(tracked), in_graph[0][0], atol=0.05)
        finally:
            camera.close()

    stale = tmp_path / "stale"
    shutil.copytree(folder, stale)
    spec, loaded = v1
    other = models["two-stage"]
    crop_head = DirectHead(trunks[224].shape[-1], len(other.names), seed=6)  # another training's
    retrained = PointsModel(names=other.names, skeleton=other.skeleton, flip_pairs=[], locate=other.locate,
                            min_side=other.min_side, points=PointsStage(crop_head, 224, other.points.tap))
    (stale / model_dir.GRAPH).write_bytes(points_graph(spec, loaded, retrained).SerializeToString())
    with open_points_model(stale, "pb") as graph:
        camera = points_camera_model(graph, stale, "pb")
        assert camera.said.startswith("Camera frames: the graph (") and "is not of this graph (its points " \
            "differ by up to" in camera.said, camera.said
        assert camera.points is graph and camera.digest == graph.digest
        (stale / FILES["tflite"]).unlink()
        camera = points_camera_model(graph, stale, "pb")
        assert camera.said == (f"Camera frames: the graph (no {FILES['tflite']}; export.sh {stale} --format "
                               "tflite runs the camera's model in about two thirds of the time)")
        assert points_camera_model(graph, stale, "saved_model").said == "Camera frames: saved_model (--model)"
