"""serve's page in headless Chromium (Debian's chromium + chromium-driver, through selenium).

Photos uploaded through the page's file input show the scores guess.sh gives; the
camera mode, fed Chromium's fake camera with a video made from a shared photo, draws
that photo's label over the video with its frames/s. A screenshot of each is kept;
with TG_SERVE_SCREENSHOTS=FOLDER they are also written there, quantized to stay small
(docs/serve-page.png and docs/serve-camera.png come from `TG_SERVE_SCREENSHOTS=docs`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SUPERHEROES
from PIL import Image
from serve_helpers import ServerProcess
from test_serve import guess_json

SCREEN = (1000, 760)


def fake_camera_video(photo: Path, path: Path, size=(320, 240), frames: int = 10) -> Path:
    """A Y4M video (YUV 4:2:0, what Chromium's fake camera reads) showing `photo`, written by hand."""
    frame = Image.open(photo).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    y, cb, cr = frame.convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    planes = y.tobytes() + cb.resize(half, Image.Resampling.BOX).tobytes() + \
        cr.resize(half, Image.Resampling.BOX).tobytes()
    with open(path, "wb") as video:
        video.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            video.write(b"FRAME\n" + planes)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium whose camera is a video of an elsa photo: (driver, that photo)."""
    from selenium import webdriver  # requirements-test.txt: missing, the test fails, never skips
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    # A missing browser fails the test: a page nobody checked renders is not a tested page.
    assert chromium and driver_path, ("headless Chromium and its driver are needed for this test: "
                                      "apt-get install chromium chromium-driver (.ci/run does)")
    folder = tmp_path_factory.mktemp("chromium")
    photo = SUPERHEROES / "elsa" / "images(1).jpg"
    video = fake_camera_video(photo, folder / "camera.y4m")
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
    yield driver, photo
    driver.quit()


@pytest.fixture(scope="module")
def page_server(trained, tmp_path_factory):
    base, _, _ = trained
    running = ServerProcess(base, log=tmp_path_factory.mktemp("page") / "server.log")
    yield running, base
    running.stop()


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
    running, base = page_server
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


def test_the_camera_mode_draws_the_label_of_what_the_camera_sees(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, photo = browser
    running, base = page_server
    expected = guess_json(base, [photo])[0]
    assert expected["score"] > 0.9  # a photo the classifier is sure of, as a camera frame too
    driver.get(running.url)
    driver.find_element(By.ID, "mode-camera").click()
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-label"))
    WebDriverWait(driver, 60).until(
        lambda d: float(d.find_element(By.ID, "camera-fps").get_attribute("data-fps") or 0) > 0)
    assert driver.find_element(By.ID, "camera-label").text == expected["label"]
    assert 0.5 < float(driver.find_element(By.ID, "camera-score").text) <= 1
    assert driver.find_element(By.ID, "camera-fps").text.endswith(" frames/s")
    assert driver.find_element(By.ID, "video").get_property("videoWidth") == 320
    no_page_errors(driver)
    keep_screenshot(driver, tmp_path / "camera.png")
    log = running.log.read_text()
    assert log.count('"POST /predict" 200') >= 2  # frame after frame
