"""serve's camera page in headless Chromium with a fake 640x480 camera: frames/s and the latency
from a frame's capture to its label (or points) drawn, today's page and server beside the old ones.

    python bench/camera.py [--out bench/results/camera.json] [--seconds 10] [--rounds 2]
                           [--baseline 2b57efb]

Trains a classes model on the superheroes set (200 steps) and a two-stage points model on 80
sign-digits hands (3 epochs, the locate stage on), and exports a copy of the classes model's float
.tflite (export.sh --format tflite), and of the points model's float files; none of it is timed. The
ways classes:new-tflite and points:new-tflite serve those copies (the camera's frames through LiteRT,
serve/camera_model.py), classes:new and points:new the graph alone. For
each model a server is started (`python -m tensorguess serve DIR --port 0`, a process of its own)
and a Chromium whose camera is a 30 frames/s video of a photo neither model trained on; the camera
mode is opened and, after 3 s to warm up, measured for --seconds. The same instrument for both
pages, installed before the page's own script runs: a frame's capture is the page's drawImage of
the video (CanvasRenderingContext2D.drawImage, wrapped), the label drawn is the next setting of
#camera-fps's text, which both pages write right after the label (the textContent setter, wrapped;
the browser paints after that). Beside it: the page's own data-latency-ms, the requests' times in
the browser (Resource Timing), the server's own time a request (its log's ms) and its CPU time a
frame (from /proc: a figure the machine's load hardly moves), and where the old path spends its
time (the JPEG encode, toBlob, wrapped too); beside them, the graph alone on one frame in the
benchmark's process.

The baseline is the page and server of commit --baseline (the main this issue was filed
against: JPEG frames of 320 px through POST /predict, a batcher that waits 5 ms for others,
at most 20 frames a second), extracted with `git archive` and run from there; it serves
classes models only (points: "not available"). Rounds alternate between the two, so that both
see the same load. The figures are the machine's: on the shared 2-core machine other work ran
beside it (the load average is recorded).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import common
from guessdir import train_classifier
from serve import cpu_seconds

sys.path.insert(0, str(common.REPO / "tests" / "python"))

CAMERA_PHOTO = {"classes": common.SUPERHEROES / "elsa" / "images(1).jpg"}
# Instrument: the capture (drawImage of the video) and the label drawn (#camera-fps changed).
INSTRUMENT = """
window.bench = { captures: [], drawn: [], encodes: [], last: null };
const draw = CanvasRenderingContext2D.prototype.drawImage;
CanvasRenderingContext2D.prototype.drawImage = function (source, ...rest) {
  if (source instanceof HTMLVideoElement) window.bench.last = performance.now();
  return draw.call(this, source, ...rest);
};
const toBlob = HTMLCanvasElement.prototype.toBlob;
HTMLCanvasElement.prototype.toBlob = function (callback, ...rest) {
  const started = performance.now();
  const timed = (blob) => { window.bench.encodes.push(performance.now() - started); callback(blob); };
  return toBlob.call(this, timed, ...rest);
};
// The label drawn: #camera-fps's text set (both pages set it right after the label), seen by its
// setter itself: a MutationObserver would run only at the next pause of the page's script, which
// may come after the next frame's capture.
const text = Object.getOwnPropertyDescriptor(Node.prototype, "textContent");
Object.defineProperty(Node.prototype, "textContent", {
  get() { return text.get.call(this); },
  set(value) {
    text.set.call(this, value);
    if (this.id === "camera-fps" && window.bench.last !== null) {
      const now = performance.now();
      window.bench.drawn.push([now, now - window.bench.last]);
      window.bench.last = null;
    }
  },
  configurable: true,
});
"""


def train_points(work: Path) -> Path:
    from test_train_points import config, hands_subset

    from tensorguess.train_points import train

    work.mkdir(parents=True, exist_ok=True)
    hands_subset(work / "hands.json", 80)
    train(config(work, work / "hands.json", common.SIGN_DIGITS, point_epochs=3, locate="on"),
          say=lambda line: None, warn=lambda line: None)
    return work


def held_out_hand() -> Path:
    from test_points_guess import hand_photos

    return hand_photos()[0][0]


def baseline_source(commit: str, where: Path) -> Path:
    """The src/ folder of `commit`, extracted from the repository's history."""
    archive = where / "baseline.tar"
    subprocess.run(["git", "-C", str(common.REPO), "archive", "--format=tar", "-o", str(archive), commit,
                    "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(where / "baseline", filter="data")
    return where / "baseline" / "src"


def start_server(model: Path, src: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen([sys.executable, "-m", "tensorguess", "serve", str(model), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put("")],
                     daemon=True).start()
    first = lines.get(timeout=300)
    if not first.startswith("Serving "):
        raise SystemExit(f"the server did not start: {first!r}\n{log.read_text()[-2000:]}")
    return process, first.split(" at ")[1].split()[0]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    array = np.asarray(values, float)
    return {"count": len(values), "p50": round(float(np.percentile(array, 50)), 1),
            "p95": round(float(np.percentile(array, 95)), 1), "max": round(float(array.max()), 1)}


def measure(driver, url: str, seconds: float, log: Path, server_pid: int) -> dict:
    """Open the camera on the page at `url` and measure it for `seconds` after 3 s of warming up."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INSTRUMENT})
    driver.get(url)
    driver.find_element(By.ID, "mode-camera").click()
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.bench.drawn.length") > 0)
    time.sleep(3)
    log_lines = len(log.read_text().splitlines())
    cpu_before = cpu_seconds(server_pid)
    start = driver.execute_script("""
        performance.clearResourceTimings(); performance.setResourceTimingBufferSize(100000);
        window.bench.drawn = []; window.bench.encodes = []; window.bench.own = [];
        const label = document.getElementById('camera-label');
        const own = () => { if (label.dataset.latencyMs) window.bench.own.push(+label.dataset.latencyMs); };
        new MutationObserver(own).observe(label, { attributes: true, attributeFilter: ['data-latency-ms'] });
        return performance.now();""")
    time.sleep(seconds)
    got = driver.execute_script("""
        const requests = performance.getEntriesByType('resource').filter((e) => e.name.includes('/predict'))
          .map((e) => e.duration);
        return [performance.now(), window.bench.drawn, window.bench.encodes, requests, window.bench.own];""")
    server_cpu = cpu_seconds(server_pid) - cpu_before
    now, drawn, encodes, requests, own = got
    driver.find_element(By.ID, "mode-photos").click()
    server_ms = [float(match) for line in log.read_text().splitlines()[log_lines:]
                 for match in re.findall(r'"POST /predict[^"]*" 200 \d+ B ([\d.]+) ms', line)]
    latencies = [latency for _, latency in drawn]
    return {"frames_per_s": round(len(drawn) / ((now - start) / 1000), 1),
            "capture_to_drawn_ms": percentiles(latencies),
            "page_own_latency_ms": percentiles(own),
            "request_in_browser_ms": percentiles(requests),
            "server_ms": percentiles(server_ms),
            # The server's own CPU a frame (all its threads): a figure the machine's load hardly moves.
            "server_cpu_ms_per_frame": round(server_cpu * 1000 / max(1, len(server_ms)), 2),
            "jpeg_encode_ms": percentiles(encodes)}


def graph_alone(model: Path, kind: str, frame: tuple[int, int]) -> dict:
    """The graph's own time for one frame, in this process (no server, no browser)."""
    import os as _os

    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorguess import kinds

    scorer = kinds.named(kind).function("open_model")(model)
    pixels = np.zeros((1, frame[1], frame[0], 3), np.uint8)
    try:
        return run_timed(scorer.run, pixels if kind == "points" else pixels.astype(np.float32))
    finally:
        scorer.close()


def run_timed(run, feed: np.ndarray) -> dict:
    """`run(feed)` 50 times after 5 to warm up: its wall-clock percentiles and CPU ms a run."""
    for _ in range(5):
        run(feed)
    times = []
    cpu = time.process_time()
    for _ in range(50):
        started = time.perf_counter()
        run(feed)
        times.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / 50
    return {**percentiles(times), "cpu_ms_per_frame": round(cpu_ms, 2)}


def with_tflite(classes: Path, folder: Path) -> Path:
    """A copy of the classes model with export.sh's float .tflite beside its graph (not timed)."""
    from tensorguess.deploy import export

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("retrained_graph.pb", "retrained_labels.txt", "train_log.json", "model_kind"):
        shutil.copy(classes / name, folder / name)
    export(folder, ["tflite"], say=lambda line: None, warn=lambda line: None)
    return folder


def with_points_tflite(points: Path, folder: Path) -> Path:
    """A copy of the points model with export.sh's float files beside its graph (not timed)."""
    from tensorguess.deploy_points import export

    shutil.copytree(points, folder, ignore=shutil.ignore_patterns("bottlenecks", ".tensor-guess.lock"),
                    dirs_exist_ok=True)
    export(folder, ["tflite"], say=lambda line: None, warn=lambda line: None)
    return folder


def tracked_alone(model: Path, model_format: str, photo: Path) -> dict:
    """A tracked camera frame's own time (the points stage alone, in the box the last answer gave) in
    this process: the graph in the box fed (`pb`), or the host's crop and the points file (`tflite`)."""
    from PIL import Image

    from tensorguess.score.points import open_points_model

    pixels = np.asarray(Image.open(photo).convert("RGB").resize((320, 240)))[None]
    with open_points_model(model, model_format) as scorer:
        _, _, box = scorer.run(pixels)
        return run_timed(lambda feed: scorer.run_in_boxes(feed, box), pixels)


def tflite_alone(model: Path) -> dict:
    """The float .tflite's own time for one 224 frame, as serve runs it for the camera (LiteRT,
    XNNPACK, a thread a core)."""
    from tensorguess.score.lite import LiteClassifier

    lite = LiteClassifier(model / "retrained_graph.tflite", model / "retrained_labels.txt")
    try:
        return run_timed(lite.run, np.zeros((1, lite.size, lite.size, 3), np.float32))
    finally:
        lite.close()


def main() -> None:
    arguments = common.parser(__doc__)
    arguments.add_argument("--seconds", type=float, default=10)
    arguments.add_argument("--rounds", type=int, default=2)
    arguments.add_argument("--baseline", default="2b57efb")
    arguments.add_argument("--ways", default="classes:baseline,classes:new,classes:new-tflite,points:new,"
                           "points:new-tflite",
                           help="which runs, kind:way, comma-separated")
    arguments.add_argument("--work", type=Path, help="keep the trained models in this folder and reuse them")
    args = arguments.parse_args()
    common.quiet_tensorflow()
    from test_serve_page import chromium_with_camera, fake_camera_video

    results: dict = {"machine": common.machine(), "seconds": args.seconds, "baseline": args.baseline}
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as folder:
        work = Path(folder)
        models = args.work or work
        if not (models / "classes" / "retrained_graph.pb").exists():
            shutil.rmtree(models / "classes", ignore_errors=True)
            (models / "classes").mkdir(parents=True)
            train_classifier(models / "classes")
        if not (models / "points" / "retrained_graph.pb").exists():
            train_points(models / "points")
        if not (models / "classes-tflite" / "retrained_graph.tflite").exists():
            with_tflite(models / "classes", models / "classes-tflite")
        if not (models / "points-tflite" / "retrained_graph.tflite").exists():
            with_points_tflite(models / "points", models / "points-tflite")
        photos = {"classes": CAMERA_PHOTO["classes"], "points": held_out_hand()}
        old_src = baseline_source(args.baseline, work)
        new_src = common.REPO / "src"
        hand = photos["points"]
        results["graph_alone_ms"] = {"classes": graph_alone(models / "classes", "classes", (224, 224)),
                                     "classes_tflite": tflite_alone(models / "classes-tflite"),
                                     "points": graph_alone(models / "points", "points", (320, 240)),
                                     "points_tracked": tracked_alone(models / "points", "pb", hand),
                                     "points_tracked_tflite": tracked_alone(models / "points-tflite",
                                                                            "tflite", hand)}
        sources = {"baseline": old_src, "new": new_src, "new-tflite": new_src}
        # new-tflite: today's server on the model with export.sh's float .tflite (points: files) beside
        # its graph (the camera's frames then run through LiteRT); new: the same graph, no .tflite.
        folders = {("classes", "new-tflite"): "classes-tflite", ("points", "new-tflite"): "points-tflite"}
        ways = [(kind, way, sources[way]) for kind, way in (item.split(":") for item in args.ways.split(","))]
        for kind, way, _ in ways:
            results.setdefault(kind, {})[way] = []
        for round_ in range(args.rounds):
            for kind, way, src in ways:
                browser_folder = work / f"chromium-{kind}-{way}-{round_}"
                browser_folder.mkdir()
                video = fake_camera_video(photos[kind], browser_folder / "camera.y4m")
                log = browser_folder / "server.log"
                process, url = start_server(models / folders.get((kind, way), kind), src, log)
                driver = chromium_with_camera(browser_folder, video)
                try:
                    figures = measure(driver, url, args.seconds, log, process.pid)
                finally:
                    driver.quit()
                    process.terminate()
                    process.wait(60)
                figures["loadavg"] = round(os.getloadavg()[0], 2)
                print(kind, way, json.dumps(figures), flush=True)
                results[kind][way].append(figures)
                shutil.rmtree(browser_folder / "profile", ignore_errors=True)
    best = {}
    for kind in ("classes", "points"):
        for way, runs in results.get(kind, {}).items():
            chosen = max(runs, key=lambda run: run["frames_per_s"])
            best[f"{kind} {way}"] = {"frames_per_s": chosen["frames_per_s"],
                                     "p50_ms": chosen["capture_to_drawn_ms"].get("p50"),
                                     "p95_ms": chosen["capture_to_drawn_ms"].get("p95")}
    results["best_round"] = best
    for name, (before, after) in {"classes_ratio": ("classes baseline", "classes new"),
                                  "tflite_over_graph": ("classes new", "classes new-tflite"),
                                  "points_tflite_over_graph": ("points new", "points new-tflite")}.items():
        if before in best and after in best:
            old, new = best[before], best[after]
            results[name] = {"frames_per_s": round(new["frames_per_s"] / old["frames_per_s"], 2),
                             "p50": round(old["p50_ms"] / new["p50_ms"], 2)}
    results["medians_of_rounds"] = {f"{kind} {way}": statistics.median(run["frames_per_s"] for run in runs)
                                    for kind in ("classes", "points")
                                    for way, runs in results.get(kind, {}).items()}
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
