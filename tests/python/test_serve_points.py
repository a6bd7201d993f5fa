"""serve with a points model (two stages: the box found, then the points read in its crop), trained
here on 80 hand photos: its API answers guess --json's box and points, TF Serving's predict gives the
graph's outputs and :classify says it classifies nothing; the page, in headless Chromium fed a
640x480 video of a hand the model never saw, draws the box, the points and the skeleton over the
video, lists the points' names and names the point under the pointer: through the graph, and
through export.sh's float files once DIR has them."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from conftest import SIGN_DIGITS
from PIL import Image
from serve_helpers import ServerProcess
from test_points_guess import hand_photos
from test_serve_page import (
    camera_numbers,
    chromium_with_camera,
    fake_camera_video,
    keep_screenshot,
    no_page_errors,
)
from test_train_points import config, hands_subset

from tensorguess.score.points import open_points_model


@pytest.fixture(scope="module")
def points_model(tmp_path_factory):
    """A small real two-stage points model: 80 hands, 3 epochs, the locate stage on."""
    from tensorguess.train_points import train

    folder = tmp_path_factory.mktemp("hands_serve")
    hands_subset(folder / "hands.json", 80)
    train(config(folder, folder / "hands.json", SIGN_DIGITS, point_epochs=3, locate="on"),
          say=lambda line: None, warn=lambda line: None)
    return folder


@pytest.fixture(scope="module")
def points_server(points_model, tmp_path_factory):
    running = ServerProcess(points_model, log=tmp_path_factory.mktemp("points_serve") / "server.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def exported_points_server(points_model, tmp_path_factory):
    """The same model with export.sh's float files beside its graph: the camera runs those."""
    import shutil

    from tensorguess.deploy_points import export

    folder = tmp_path_factory.mktemp("hands_exported") / "model"
    shutil.copytree(points_model, folder, ignore=shutil.ignore_patterns("bottlenecks"))
    export(folder, ["tflite"], say=lambda line: None, warn=lambda line: None)
    running = ServerProcess(folder, log=tmp_path_factory.mktemp("points_serve_files") / "server.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def hand():
    return hand_photos()[0][0]


def test_a_points_model_is_served_with_guess_s_answer_and_tf_serving_s_outputs(points_model, points_server,
                                                                              hand):
    with open_points_model(points_model) as scorer:
        names = scorer.names
        [wanted] = list(scorer.score_files([hand]))
    model = points_server.request("GET", "/model")[1]
    assert model["kind"] == "points" and model["labels"] == names and model["frame"] is None
    assert model["skeleton"] and all(0 <= k < len(names) for bone in model["skeleton"] for k in bone)
    status, answer, _ = points_server.request("POST", "/predict", hand.read_bytes())
    assert status == 200 and set(answer) == {"box", "score", "keypoints"}
    assert [point["name"] for point in answer["keypoints"]] == names
    got = np.array([[point["x"], point["y"]] for point in answer["keypoints"]])
    assert np.abs(got - wanted.points).max() < 1e-3  # the scorer's own points, in the photo's pixels
    body = json.dumps({"instances": [{"b64": base64.b64encode(hand.read_bytes()).decode()}]})
    status, predicted, _ = points_server.request("POST", "/v1/models/hands:predict", body)
    assert status == 200
    first = predicted["predictions"][0]
    assert np.abs(np.array(first["points"]) - wanted.points).max() < 1e-3
    assert np.abs(np.array(first["box"]) - wanted.box).max() < 1e-3
    status, metadata, _ = points_server.request("GET", "/v1/models/hands/metadata")
    outputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
    assert status == 200 and set(outputs) == {"points", "confidence", "box"}
    status, refused, _ = points_server.request("POST", "/v1/models/hands:classify", body)
    assert status == 501 and "classifies nothing" in refused["error"]


# The page's frames as it sends them: each POST /predict/frame's address kept in window.sentFrames.
SENT_FRAMES = """
window.sentFrames = [];
const realFetch = window.fetch.bind(window);
window.fetch = (url, ...rest) => {
  if (String(url).includes("/predict/frame")) window.sentFrames.push(String(url));
  return realFetch(url, ...rest);
};
"""


def test_a_frame_with_a_box_is_read_in_that_box_and_a_bad_box_is_a_400(points_server, hand):
    """The camera's tracking, stateless: an answer gives next_box (the model's crop rule around its
    points); a frame sent with a box has its points read in that box (the answer's box is it), the
    locate stage not run; a box that is not four numbers, or not over the frame, is a 400."""
    pixels = np.asarray(Image.open(hand).convert("RGB").resize((320, 240)))
    body = pixels.tobytes()
    status, located, raw = points_server.request("POST", "/predict/frame?width=320&height=240", body=body)
    assert status == 200, raw
    x0, y0, x1, y1 = located["next_box"]
    assert 0 < x1 - x0 == pytest.approx(y1 - y0, abs=0.02)  # a square, as the model crops
    moved = [x0 + 12.5, y0 - 7.25, x1 + 12.5, y1 - 7.25]  # not the box the locate stage would find
    query = ",".join(f"{value:g}" for value in moved)
    status, tracked, raw = points_server.request("POST", f"/predict/frame?width=320&height=240&box={query}",
                                                 body=body)
    assert status == 200, raw
    assert tracked["box"] == pytest.approx([moved[0], moved[1], moved[2] - moved[0], moved[3] - moved[1]],
                                           abs=1e-3)
    assert len(tracked["keypoints"]) == len(located["keypoints"]) and len(tracked["next_box"]) == 4
    for box, says in (("1,2,3", "box= takes four numbers"), ("nan,1,100,100", "box= takes four numbers"),
                      ("400,300,500,400", "is not a box over this 320x240 frame"),
                      ("10,10,12,12", "is not a box over this 320x240 frame")):
        status, answer, raw = points_server.request(
            "POST", f"/predict/frame?width=320&height=240&box={box}", body=body)
        assert status == 400 and says in answer["error"] and "\n" not in answer["error"], raw


@pytest.mark.parametrize("served", ["points_server", "exported_points_server"], ids=["graph", "float files"])
def test_the_camera_draws_the_box_points_and_skeleton_of_a_hand_and_names_them(points_model, served, request,
                                                                              hand, tmp_path_factory,
                                                                              record_property):
    """Through the graph, and through export.sh's float files where DIR has them (serve's line says
    which)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    points_server = request.getfixturevalue(served)
    said = points_server.lines.get(timeout=30).strip()
    expected = {"points_server": ("Camera frames: the graph (no retrained_graph.tflite;", "of the time)"),
                "exported_points_server": ("Camera frames: ",
                                           "retrained_graph.tflite (TFLite float, of this graph)")}
    assert said.startswith(expected[served][0]) and said.endswith(expected[served][1]), said
    folder = tmp_path_factory.mktemp("chromium_points")
    video = fake_camera_video(hand, folder / "hand.y4m")
    # What the camera shows: the photo at 640x480, scored by the model itself.
    shown = folder / "shown.png"
    Image.open(hand).convert("RGB").resize((640, 480), Image.Resampling.LANCZOS).save(shown)
    with open_points_model(points_model) as scorer:
        names = scorer.names
        [wanted] = list(scorer.score_files([shown]))
    driver = chromium_with_camera(folder, video)
    try:
        driver.get(points_server.url)
        WebDriverWait(driver, 30).until(lambda d: "points:" in d.find_element(By.ID, "model").text)
        driver.execute_script(SENT_FRAMES)
        driver.find_element(By.ID, "mode-camera").click()
        WebDriverWait(driver, 60).until(lambda d: camera_numbers(d)[0] > 2)
        frames, _ = camera_numbers(driver)
        time.sleep(3)
        later, latency = camera_numbers(driver)
        record_property("points_camera_frames_per_s", (later - frames) / 3)  # recorded, not asserted
        record_property("points_camera_latency_ms", latency)
        print(f"points camera: {(later - frames) / 3:.1f} frames/s, last latency {latency:.1f} ms")
        assert later > frames and latency > 0
        # Tracked: frames go with the last answer's next_box (the locate stage skipped), and every
        # tenth without one (the hand found again).
        sent = driver.execute_script("return window.sentFrames")
        tracked = [url for url in sent if "&box=" in url]
        assert len(tracked) >= 2 and len(sent) - len(tracked) >= 1, sent
        listed = driver.execute_script(  # at once: the list is drawn again with each frame
            "return [...document.querySelectorAll('#points-list li')].map((item) => item.dataset.name)")
        assert listed == names
        canvas = driver.find_element(By.ID, "points")
        drawn = np.array(json.loads(canvas.get_attribute("data-points")), float)  # in the video's pixels
        side = wanted.box[2] - wanted.box[0]
        # The page's frame is the video at 320x240: the same points, within a tenth of the box.
        assert np.linalg.norm(drawn - wanted.points, axis=1).mean() < 0.1 * side
        assert canvas.get_property("width") == 640 and canvas.get_property("height") == 480
        # Drawn: the canvas holds coloured pixels (box, bones, points) where the video is.
        painted = driver.execute_script(
            "const c = document.getElementById('points'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
        assert painted > 500
        # The name of the point under the pointer.
        point = drawn[0]
        rect = driver.execute_script("const r = document.getElementById('points').getBoundingClientRect();"
                                     "return [r.width, r.height];")
        scale = min(rect[0] / 640, rect[1] / 480)
        offset = ((rect[0] - 640 * scale) / 2, (rect[1] - 480 * scale) / 2)
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(offset[0] + point[0] * scale - rect[0] / 2),
            int(offset[1] + point[1] * scale - rect[1] / 2)).perform()
        WebDriverWait(driver, 5).until(lambda d: canvas.get_attribute("data-hovered"))
        hovered = canvas.get_attribute("data-hovered")
        assert hovered in names
        no_page_errors(driver)
        keep_screenshot(driver, folder / "points-camera.png")
    finally:
        driver.quit()
