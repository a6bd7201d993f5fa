"""serve's page in headless Chromium (Debian's chromium + chromium-driver, through selenium).

Photos uploaded through the page's file input show the scores guess.sh gives; the
camera mode, fed Chromium's fake camera with a 640x480 video made from a shared photo, draws
that photo's label over the video with its frames/s and latency (recorded, never asserted:
bench/camera.py measures them). The camera's races: leaving camera mode or clicking Camera
again while the browser asks for the camera (the prompt held open by a test's wrapper of
getUserMedia) leaves no stream running; a server that stops clears the label and says so,
and the message goes once it is back. A screenshot of each is kept;
with TG_SERVE_SCREENSHOTS=FOLDER they are also written there, quantized to stay small
(docs/serve-page.png and docs/serve-camera.png come from `TG_SERVE_SCREENSHOTS=docs`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SUPERHEROES
from PIL import Image
from serve_helpers import ServerProcess
from test_serve import guess_json

SCREEN = (1000, 760)


def fake_camera_video(photo: Path, path: Path, size=(640, 480), frames: int = 30) -> Path:
    """A 30 frames/s Y4M video (YUV 4:2:0, what Chromium's fake camera reads) showing `photo`,
    written by hand."""
    frame = Image.open(photo).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    y, cb, cr = frame.convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    planes = y.tobytes() + cb.resize(half, Image.Resampling.BOX).tobytes() + \
        cr.resize(half, Image.Resampling.BOX).tobytes()
    with open(path, "wb") as video:
        video.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            video.write(b"FRAME\n" + planes)
    return path


def chromium_with_camera(folder: Path, video: Path):
    """Headless Chromium whose camera is `video`, the camera granted without asking."""
    from selenium import webdriver  # requirements-test.txt: missing, the test fails, never skips
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    # A missing browser fails the test: a page nobody checked renders is not a tested page.
    assert chromium and driver_path, ("headless Chromium and its driver are needed for this test: "
                                      "apt-get install chromium chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={SCREEN[0]},{SCREEN[1]}", f"--user-data-dir={folder / 'profile'}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={video}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_window_size(*SCREEN)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium whose camera is a video of an elsa photo: (driver, that photo)."""
    folder = tmp_path_factory.mktemp("chromium")
    photo = SUPERHEROES / "elsa" / "images(1).jpg"
    driver = chromium_with_camera(folder, fake_camera_video(photo, folder / "camera.y4m"))
    yield driver, photo
    driver.quit()


class Served:
    """The page's server, which a test may stop and start again on the same port."""

    def __init__(self, base: Path, log: Path):
        self.base, self.log = base, log
        self.running = ServerProcess(base, log=log)

    def restart(self) -> None:
        self.running = ServerProcess(self.base, "--port", str(self.running.port),
                                     log=self.log.with_suffix(".2"))

    def stop(self) -> None:
        if self.running.process.poll() is None:
            self.running.stop()


@pytest.fixture(scope="module")
def page_server(trained, tmp_path_factory):
    base, _, _ = trained
    served = Served(base, tmp_path_factory.mktemp("page") / "server.log")
    yield served, base
    served.stop()


# The camera prompt held open: getUserMedia answers only once the test calls window.grant(), and
# every stream it gave is kept in window.givenStreams, to check that the page stopped it.
HOLD_THE_PROMPT = """
const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
window.givenStreams = [];
window.asked = 0;
const waiting = [];
navigator.mediaDevices.getUserMedia = (constraints) => new Promise((resolve, reject) => {
  window.asked += 1;
  const keep = (stream) => { window.givenStreams.push(stream); resolve(stream); };
  waiting.push(() => real(constraints).then(keep, reject));
});
window.grant = () => { for (const answer of waiting.splice(0)) answer(); };
"""
LIVE_TRACKS = ("return window.givenStreams.flatMap((s) => s.getTracks())"
               ".filter((t) => t.readyState === 'live').length")
ALL_TRACKS = "return window.givenStreams.flatMap((s) => s.getTracks()).length"


def camera_numbers(driver) -> tuple[int, float]:
    """#camera-label's data-frames and data-latency-ms (0, nan before the first frame)."""
    label = driver.find_element("id", "camera-label")
    frames = label.get_attribute("data-frames")
    latency = label.get_attribute("data-latency-ms")
    return int(frames or 0), float(latency) if latency else float("nan")


def keep_screenshot(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    pixels = np.asarray(Image.open(path).convert("L"))
    assert pixels.shape[1] == SCREEN[0] and pixels.shape[0] > 500 and pixels.std() > 10  # drawn
    wanted = os.environ.get("TG_SERVE_SCREENSHOTS")
    if wanted:
        Image.open(path).convert("RGB").quantize(128).save(Path(wanted) / f"serve-{path.stem}.png",
                                                           optimize=True)
    return path


def no_page_errors(driver) -> None:
    """Nothing refused by the page's policy (an asset from elsewhere) and no script error."""
    problems = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not problems, problems


def test_photos_uploaded_on_the_page_show_guess_sh_scores_as_bars(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, _ = browser
    served, base = page_server
    running = served.running
    photos = [SUPERHEROES / "darth_vader" / "s112312jggfd.jpg", SUPERHEROES / "elsa" / "images(100).jpg"]
    wanted = {Path(entry["image"]).name: entry for entry in guess_json(base, photos)}
    driver.get(running.url)
    WebDriverWait(driver, 30).until(lambda d: "labels:" in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "files").send_keys("\n".join(str(photo) for photo in photos))
    WebDriverWait(driver, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result[data-state=done]")) == len(photos))
    for card in driver.find_elements(By.CSS_SELECTOR, ".result"):
        expected = wanted[card.get_attribute("data-name")]
        assert card.get_attribute("data-label") == expected["label"]
        rows = card.find_elements(By.CSS_SELECTOR, ".row")
        shown = [(row.find_element(By.CSS_SELECTOR, ".label").text,
                  float(row.find_element(By.CSS_SELECTOR, ".value").text)) for row in rows]
        assert [label for label, _ in shown] == list(expected["scores"])  # best first
        for label, score in shown:
            assert abs(score - expected["scores"][label]) <= 1e-5
        width = rows[0].find_element(By.CSS_SELECTOR, ".fill").size["width"]
        track = rows[0].find_element(By.CSS_SELECTOR, ".track").size["width"]
        assert abs(width / track - expected["score"]) < 0.02  # the bar is the score
        assert card.find_element(By.TAG_NAME, "img").get_property("naturalWidth") > 0
    no_page_errors(driver)
    keep_screenshot(driver, tmp_path / "page.png")


def test_the_camera_mode_draws_the_label_of_what_the_camera_sees(browser, page_server, tmp_path,
                                                                  record_property):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, photo = browser
    served, base = page_server
    running = served.running
    expected = guess_json(base, [photo])[0]
    assert expected["score"] > 0.9  # a photo the classifier is sure of, as a camera frame too
    driver.get(running.url)
    driver.find_element(By.ID, "mode-camera").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-label"))
    WebDriverWait(driver, 60).until(
        lambda d: float(d.find_element(By.ID, "camera-fps").get_attribute("data-fps") or 0) > 0)
    assert driver.find_element(By.ID, "camera-label").text == expected["label"]
    assert 0.5 < float(driver.find_element(By.ID, "camera-score").text) <= 1
    assert driver.find_element(By.ID, "video").get_property("videoWidth") == 640
    frames, latency = camera_numbers(driver)
    time.sleep(3)
    later, latency = camera_numbers(driver)
    assert later > frames and latency > 0  # frame after frame, each with its latency
    shown = driver.find_element(By.ID, "camera-fps").text  # "28.9 frames/s, 21 ms"
    assert shown.split(" frames/s, ")[1] == f"{latency:.0f} ms" or shown.endswith(" ms"), shown
    record_property("camera_frames_per_s", (later - frames) / 3)  # recorded, not asserted
    record_property("camera_latency_ms", latency)
    print(f"classes camera: {(later - frames) / 3:.1f} frames/s, last latency {latency:.1f} ms")
    no_page_errors(driver)
    keep_screenshot(driver, tmp_path / "camera.png")
    log = running.log.read_text()
    # Frame after frame, as pixels (the log shows a query as "?").
    assert log.count('"POST /predict/frame?" 200') >= 2


def test_leaving_camera_mode_while_the_browser_asks_for_the_camera_stops_it(browser, page_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, _ = browser
    served, _ = page_server
    driver.get(served.running.url)
    driver.execute_script(HOLD_THE_PROMPT)
    driver.find_element(By.ID, "mode-camera").click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.asked") == 1)
    driver.find_element(By.ID, "mode-photos").click()  # left while the prompt is open
    driver.execute_script("window.grant()")  # the browser's answer comes late
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(ALL_TRACKS) >= 1)
    time.sleep(1)
    assert driver.execute_script(LIVE_TRACKS) == 0  # the late stream was stopped: no camera light
    assert camera_numbers(driver)[0] == 0 and driver.find_element(By.ID, "camera").get_attribute("hidden")


def test_clicking_camera_twice_during_the_prompt_gives_one_stream_at_most(browser, page_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, _ = browser
    served, _ = page_server
    driver.get(served.running.url)
    driver.execute_script(HOLD_THE_PROMPT)
    driver.find_element(By.ID, "mode-camera").click()
    driver.find_element(By.ID, "mode-camera").click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.asked") >= 1)
    time.sleep(0.5)
    driver.execute_script("window.grant()")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-label"))
    assert driver.execute_script("return window.asked") == 1
    assert driver.execute_script(LIVE_TRACKS) == 1
    driver.find_element(By.ID, "mode-photos").click()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(LIVE_TRACKS) == 0)


def copy_of_model(source: Path, folder: Path, biases_added=None) -> Path:
    """The model of `source` in `folder` (its graph, labels, log, kind); with `biases_added`, its
    graph's last layer's biases moved by that much: another training's graph, of the same network."""
    import tensorflow as tf

    from tensorguess.export.formats import read_graph

    folder.mkdir()
    for name in ("retrained_graph.pb", "retrained_labels.txt", "train_log.json", "model_kind"):
        shutil.copy(source / name, folder / name)
    if biases_added is not None:
        graph = read_graph(folder / "retrained_graph.pb")
        node = next(node for node in graph.node if node.name == "final_training_ops/biases")
        moved = tf.make_ndarray(node.attr["value"].tensor) + np.asarray(biases_added, np.float32)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(moved))
        (folder / "retrained_graph.pb").write_bytes(graph.SerializeToString())
    return folder


def test_the_camera_runs_the_tflite_model_of_this_graph_and_the_graph_when_it_is_stale(
        browser, trained, tmp_path_factory):
    """export.sh's float .tflite of the graph scores the camera's frames (serve says so, /healthz
    names its sha1); the same .tflite beside another training's graph is left alone."""
    import hashlib

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tensorguess.export.formats import read_graph
    from tensorguess.export.tflite import write_tflite
    from tensorguess.model_dir import FINAL_TENSOR
    from tensorguess.score.models import open_classifier
    from tensorguess.serve.camera_model import camera_model

    driver, photo = browser
    source, _, _ = trained
    folder = tmp_path_factory.mktemp("camera-tflite")
    fresh = copy_of_model(source, folder / "fresh")
    labels = (fresh / "retrained_labels.txt").read_text().split("\n")[:-1]
    write_tflite(read_graph(fresh / "retrained_graph.pb"), labels, fresh / "retrained_graph.tflite",
                 FINAL_TENSOR)  # what export.sh --format tflite writes
    lite_sha1 = hashlib.sha1((fresh / "retrained_graph.tflite").read_bytes()).hexdigest()
    stale = copy_of_model(source, folder / "stale", biases_added=[4.0, -4.0])
    shutil.copy(fresh / "retrained_graph.tflite", stale / "retrained_graph.tflite")
    expected = guess_json(source, [photo])[0]

    running = ServerProcess(fresh, log=folder / "fresh.log")
    try:
        said = running.lines.get(timeout=30)
        assert said.startswith("Camera frames: ") and "retrained_graph.tflite (TFLite float, of this graph)" \
            in said, said
        assert running.request("GET", "/healthz")[1]["camera_model"] == lite_sha1
        driver.get(running.url)
        driver.find_element(By.ID, "mode-camera").click()
        label = driver.find_element(By.ID, "camera-label")
        WebDriverWait(driver, 60).until(lambda d: camera_numbers(d)[0] >= 3)
        assert label.text == expected["label"]
        driver.find_element(By.ID, "mode-photos").click()
        assert running.log.read_text().count('"POST /predict/frame?" 200') >= 3
    finally:
        running.stop()

    # The stale one, in this process (serve's own choice, without a second server's start).
    with open_classifier(stale) as classifier:
        camera = camera_model(classifier, stale, "pb")
        assert camera.said.startswith("Camera frames: the graph (") and \
            "is not of this graph (its scores differ" in camera.said, camera.said
        assert camera.digest == hashlib.sha1((stale / "retrained_graph.pb").read_bytes()).hexdigest()
        assert camera.run == classifier.run


def test_a_stopped_server_clears_the_label_and_the_error_goes_once_it_is_back(browser, page_server):
    """Last in this module: it stops the page's server and starts it again on the same port."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, _ = browser
    served, _ = page_server
    driver.get(served.running.url)
    driver.find_element(By.ID, "mode-camera").click()
    overlay = driver.find_element(By.ID, "overlay")
    WebDriverWait(driver, 60).until(lambda d: overlay.get_attribute("data-label"))
    label = driver.find_element(By.ID, "camera-label")
    assert label.text.strip()
    served.running.stop()
    status = driver.find_element(By.ID, "camera-status")
    WebDriverWait(driver, 30).until(lambda d: status.text.startswith("Scoring failed"))
    time.sleep(0.5)  # a label drawn at this moment would be a stale one
    assert not label.text.strip() and not overlay.get_attribute("data-label")
    served.restart()
    WebDriverWait(driver, 60).until(lambda d: label.text.strip())
    WebDriverWait(driver, 10).until(lambda d: not status.text.startswith("Scoring failed"))
    assert status.text == "Scoring the camera's frames."
    driver.find_element(By.ID, "mode-photos").click()
