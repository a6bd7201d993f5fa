"""serve: a real HTTP server on a free 127.0.0.1 port, started and stopped by the tests.

Scores against guess.sh's, TF Serving's REST shape, concurrent clients, every bad body
(and the request after it), the full queue, the timeout, the page's files, the signals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SUPERHEROES
from PIL import Image
from serve_helpers import ServerProcess, multipart, request

from tensorguess.score.predict import Classifier
from tensorguess.serve import server as serve_server
from tensorguess.serve.batcher import Batcher, QueueFull
from tensorguess.serve.http_app import build_app
from tensorguess.serve.limits import Limits


def photos() -> list[Path]:
    return [photo for label in ("elsa", "darth_vader")
            for photo in sorted((SUPERHEROES / label).iterdir())[:3]]


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """The superheroes classifier served by a real server process: (server, tf_files dir)."""
    base, _, _ = trained
    log = tmp_path_factory.mktemp("serve") / "server.log"
    running = ServerProcess(base, "--max_body_mb", "1", "--timeout", "20", log=log)
    yield running, base
    if running.process.poll() is None:
        running.stop()


def guess_json(base: Path, images: list[Path]) -> list[dict]:
    """What `bash guess.sh DIR IMAGES --json` prints, run in the local runtime."""
    env = {**os.environ, "TG_RUNTIME": "local"}
    out = subprocess.run(["bash", str(REPO / "guess.sh"), str(base), *map(str, images), "--json"],
                         capture_output=True, text=True, env=env, check=True, timeout=300).stdout
    return json.loads(out)


def as_png(photo: Path, folder: Path) -> Path:
    path = folder / (photo.stem + ".png")
    Image.open(photo).save(path)
    return path


def test_scores_equal_guess_sh_raw_multipart_and_tf_serving(served, tmp_path):
    running, base = served
    images = [*photos(), as_png(photos()[0], tmp_path)]
    expected = guess_json(base, images)
    labels = running.request("GET", "/labels")[1]["labels"]
    assert labels == (base / "retrained_labels.txt").read_text().split("\n")[:-1]
    for image, wanted in zip(images, expected, strict=True):
        data = image.read_bytes()
        status, raw_answer, _ = running.request("POST", "/predict", data, {"Content-Type": "image/jpeg"})
        assert status == 200
        body, content_type = multipart("image", image.name, data)
        status, form_answer, _ = running.request("POST", "/predict", body, {"Content-Type": content_type})
        assert status == 200
        for answer in raw_answer, form_answer:
            assert set(answer) == {"label", "score", "scores"}
            assert answer["label"] == wanted["label"]
            assert list(answer["scores"]) == list(wanted["scores"])  # best first, as guess --json
            assert abs(answer["score"] - wanted["score"]) <= 1e-5
            for label, score in wanted["scores"].items():
                assert abs(answer["scores"][label] - score) <= 1e-5

    # TF Serving's row format, several instances at once; the bare and the named input.
    instances = [{"b64": base64.b64encode(image.read_bytes()).decode()} for image in images]
    instances[1] = {"image_bytes": instances[1]}
    status, answer, _ = running.request("POST", "/v1/models/superheroes:predict",
                                        json.dumps({"instances": instances}))
    assert status == 200 and set(answer) == {"predictions"} and len(answer["predictions"]) == len(images)
    for row, wanted in zip(answer["predictions"], expected, strict=True):
        assert len(row) == len(labels)
        for label, score in zip(labels, row, strict=True):
            assert abs(score - wanted["scores"][label]) <= 1e-5
    status, versioned, _ = running.request("POST", "/v1/models/superheroes/versions/1:predict",
                                           json.dumps({"instances": instances[:1]}))
    assert status == 200 and versioned["predictions"] == answer["predictions"][:1]
    status, model_status, _ = running.request("GET", "/v1/models/superheroes")
    assert status == 200 and model_status["model_version_status"][0]["state"] == "AVAILABLE"
    status, health, _ = running.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["labels"] == len(labels)


def test_200_requests_from_8_concurrent_clients_are_all_answered_in_batches(served):
    running, _ = served
    images = [image.read_bytes() for image in photos()]
    alone = [running.request("POST", "/predict", data)[1] for data in images]
    before = running.request("GET", "/healthz")[1]

    def one(index: int):
        return index, running.request("POST", "/predict", images[index % len(images)])

    with ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(one, range(200)))
    assert len(answers) == 200
    for index, (status, answer, _) in answers:
        assert status == 200
        wanted = alone[index % len(images)]
        assert answer["label"] == wanted["label"] and abs(answer["score"] - wanted["score"]) <= 1e-5
    after = running.request("GET", "/healthz")[1]
    assert after["photos_scored"] - before["photos_scored"] == 200
    # Concurrent requests were scored together: fewer batches than photos.
    assert after["batches"] - before["batches"] < 200 and after["largest_batch"] > 1


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with no pixel data to speak of."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def chunked(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_each_bad_body_gets_its_4xx_one_line_json_error_and_the_next_request_is_served(served):
    running, _ = served
    good = photos()[0].read_bytes()
    wanted = running.request("POST", "/predict", good)[1]
    jpeg_noise = b"\xff\xd8\xff\xe0" + os.urandom(1_200_000)  # over the server's 1 MB cap
    b64 = base64.b64encode
    cases = [
        ("POST", "/predict", b"", {}, 400, "is empty"),
        ("POST", "/predict", b"this is not a photo at all", {}, 415, "not an image"),
        ("POST", "/predict", good[: len(good) // 2], {}, 422, "broken JPEG data"),
        ("POST", "/predict", jpeg_noise, {}, 413, "larger than the limit of 1 MB"),
        # No Content-Length: http.client sends an iterable body chunked; the cap counts what arrives.
        ("POST", "/predict", chunked(jpeg_noise), {}, 413, "larger than"),
        ("POST", "/predict", png_declaring(20000, 20000), {}, 413, "too large to decode safely"),
        ("POST", "/predict", multipart("image", "x.txt", b"hello", "text/plain")[0],
         {"Content-Type": multipart("image", "x.txt", b"")[1]}, 415, "not an image"),
        ("POST", "/predict", b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=y"}, 400,
         "multipart upload cannot be read"),
        ("POST", "/predict", b'--y\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--y--\r\n',
         {"Content-Type": "multipart/form-data; boundary=y"}, 400, "holds no file"),
        ("POST", "/v1/models/m:predict", b"{not json", {}, 400, "not JSON"),
        ("POST", "/v1/models/m:predict", b'{"inputs": []}', {}, 400, 'no "instances"'),
        ("POST", "/v1/models/m:predict", b'{"instances": [{"b64": "@@@"}]}', {}, 400, "not valid base64"),
        ("POST", "/v1/models/m:predict",
         json.dumps({"instances": [{"b64": b64(good).decode()}, {"b64": b64(b"garbage").decode()}]}), {},
         415, "instance 1 is not an image"),
        ("POST", "/v1/models/m:predict",
         json.dumps({"instances": [{"b64": b64(good[:900]).decode()}]}), {}, 422, "instance 0 cannot"),
        ("GET", "/predict", None, {}, 405, "not allowed"),
        ("GET", "/../etc/passwd", None, {}, 404, "no such page"),
        ("GET", "/page/../../predict.py", None, {}, 404, ""),
    ]
    for method, path, body, headers, status, words in cases:
        got, answer, raw = running.request(method, path, body, headers)
        assert got == status, (path, headers, got, raw)
        if words:
            assert words in answer["error"], answer
            assert raw.decode().count("\n") == 1 and raw.endswith(b"}\n")  # one line of JSON
        after = running.request("POST", "/predict", good)
        assert after[0] == 200 and after[1] == wanted  # the next request is served
    log = running.log.read_text()
    assert '"POST /predict" 413' in log and '"POST /predict" 415' in log and '"GET /predict" 405' in log


class HeldClassifier:
    """A real classifier whose scoring waits until the test lets it go: a server held busy."""

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        self.labels = classifier.labels
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()  # free while the app warms up

    def ranked(self, scores):
        return self.classifier.ranked(scores)

    def score_files(self, paths, batch_size=32):
        self.entered.set()
        assert self.release.wait(60)
        return self.classifier.score_files(paths, batch_size)


class InProcessServer:
    """build_app under uvicorn on a thread, on a free 127.0.0.1 port: a real server the test holds."""

    def __init__(self, app):
        import uvicorn

        sock = serve_server.bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])))
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


def test_a_full_queue_answers_503_and_a_slow_answer_504(trained):
    base, _, _ = trained
    lines: list[str] = []
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        held = HeldClassifier(classifier)
        app = build_app(held, Limits(queue_size=1, timeout_s=20), log=lines.append)
        running = InProcessServer(app)
        try:
            photo = photos()[0].read_bytes()
            held.release.clear()
            held.entered.clear()
            with ThreadPoolExecutor(2) as clients:
                first = clients.submit(request, running.port, "POST", "/predict", photo)
                assert held.entered.wait(30)  # the first photo is being scored, held
                second = clients.submit(request, running.port, "POST", "/predict", photo)
                deadline = time.monotonic() + 30
                while request(running.port, "GET", "/healthz")[1]["queued"] < 1:  # the second waits
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                status, answer, raw = request(running.port, "POST", "/predict", photo)
                assert status == 503 and "the server is busy" in answer["error"] and raw.count(b"\n") == 1
                held.release.set()
                assert first.result()[0] == 200 and second.result()[0] == 200
            assert request(running.port, "POST", "/predict", photo)[0] == 200  # and after, all is well
        finally:
            held.release.set()
            running.stop()
        assert sum('"POST /predict" 503' in line for line in lines) == 1
        assert sum('"POST /predict" 200' in line for line in lines) == 3

        held = HeldClassifier(classifier)
        app = build_app(held, Limits(timeout_s=0.5), log=lines.append)
        running = InProcessServer(app)
        try:
            held.release.clear()
            status, answer, _ = request(running.port, "POST", "/predict", photo)
            assert status == 504 and "no scores within 0.5 s" in answer["error"]
            held.release.set()
            assert request(running.port, "POST", "/predict", photo)[0] == 200
            # A client that sends part of its body and then nothing: 408 once the timeout is up.
            with socket.create_connection(("127.0.0.1", running.port), timeout=30) as slow:
                head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                slow.sendall(head + photo[:10])
                answer = b""
                while not answer.endswith(b"}\n") and (part := slow.recv(65536)):
                    answer += part
                answer = answer.decode()
            assert answer.startswith("HTTP/1.1 408 ") and "did not arrive within 0.5 s" in answer
            assert request(running.port, "POST", "/predict", photo)[0] == 200
        finally:
            held.release.set()
            running.stop()


class FailingOnce(HeldClassifier):
    """A real classifier whose next scoring fails as a full disk would."""

    def score_files(self, paths, batch_size=32):
        if self.release.is_set():
            return self.classifier.score_files(paths, batch_size)
        self.release.set()
        raise OSError(28, "No space left on device")


def test_a_failed_scoring_is_a_500_in_one_line_of_json_and_the_server_goes_on(trained):
    base, _, _ = trained
    lines: list[str] = []
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        failing = FailingOnce(classifier)
        running = InProcessServer(build_app(failing, log=lines.append))
        try:
            photo = photos()[0].read_bytes()
            failing.release.clear()
            status, answer, raw = request(running.port, "POST", "/predict", photo)
            assert status == 500 and raw.count(b"\n") == 1
            assert answer["error"] == ("scoring failed ([Errno 28] No space left on device); "
                                       "the server goes on")
            assert request(running.port, "POST", "/predict", photo)[0] == 200
        finally:
            running.stop()
    assert [line.split('" ')[1].split()[0] for line in lines if "/predict" in line] == ["500", "200"]


def test_the_batcher_batches_bounds_its_queue_and_skips_abandoned_photos():
    gate = threading.Event()
    seen: list[list[bytes]] = []

    def score(items):
        gate.wait(10)
        seen.append(items)
        return [item.upper() for item in items]

    batcher = Batcher(score, max_batch=4, max_wait_s=0.05, max_queue=8)

    async def main():
        first = asyncio.ensure_future(batcher.submit(b"a"))
        await asyncio.sleep(0.2)  # taken by the scoring thread, which waits at the gate
        rest = [asyncio.ensure_future(batcher.submit(bytes([98 + i]))) for i in range(8)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(b"z")
        rest[0].cancel()  # a client that went away: its photo is not scored
        await asyncio.sleep(0.01)
        gate.set()
        return await first, await asyncio.gather(*rest[1:])

    first, rest = asyncio.run(main())
    batcher.close()
    assert first == b"A" and rest == [bytes([99 + i]).upper() for i in range(7)]
    assert [len(items) for items in seen] == [1, 3, 4] and b"b" not in seen[1]


def test_the_page_and_its_files_are_served_with_a_policy_that_keeps_it_offline(served):
    running, _ = served
    status, _, page = running.request("GET", "/")
    assert status == 200 and b'<script src="/page/page.js"' in page
    assert b"http://" not in page and b"https://" not in page
    for name in ("page.js", "page.css"):
        status, _, text = running.request("GET", f"/page/{name}")
        assert status == 200 and b"http://" not in text and b"https://" not in text and b"//cdn" not in text


def test_sigterm_and_ctrl_c_stop_the_server_cleanly(trained, tmp_path):
    base, _, _ = trained
    for sig, status, line in ((signal.SIGTERM, 143, "tensor-guess: terminated"),
                              (signal.SIGINT, 130, "tensor-guess: interrupted")):
        running = ServerProcess(base, log=tmp_path / f"{sig}.log")
        assert running.request("POST", "/predict", photos()[0].read_bytes())[0] == 200
        got, stderr = running.stop(sig)
        assert got == status and stderr.rstrip().splitlines()[-1] == line
        assert "Traceback" not in stderr
        with pytest.raises(OSError):
            request(running.port, "GET", "/healthz", timeout=5)  # the port is closed


def test_serve_refuses_bad_settings_and_a_taken_port_in_one_line(trained, capsys):
    from tensorguess import cli

    base, _, _ = trained
    assert cli.main(["serve", str(base), "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "tensor-guess: --port must be a TCP port, 0 to 65535, not 70000"
    assert cli.main(["serve", str(base), "--queue_size", "0"]) == 2
    assert "--queue_size must be at least 1" in capsys.readouterr().err
    taken = serve_server.bind("127.0.0.1", 0)
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert cli.main(["serve", str(base), "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"tensor-guess: cannot listen on 127.0.0.1 port {port} (")
    finally:
        taken.close()
    assert serve_server.is_loopback("127.0.0.1") and serve_server.is_loopback("::1")
    assert not serve_server.is_loopback("0.0.0.0")


def test_a_server_on_every_address_says_so(trained, tmp_path):
    base, _, _ = trained
    running = ServerProcess(base, "--host", "0.0.0.0", "--no_token", log=tmp_path / "all.log")
    try:
        assert running.request("GET", "/healthz")[0] == 200
    finally:
        _, stderr = running.stop()
    assert "tensor-guess: listening on 0.0.0.0, not on the loopback address" in stderr


def test_an_exif_rotated_photo_is_scored_as_guess_scores_it(served, tmp_path):
    running, base = served
    image = Image.open(photos()[3])
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif.tobytes())
    wanted = guess_json(base, [rotated])[0]
    answer = running.request("POST", "/predict", rotated.read_bytes())[1]
    assert answer["label"] == wanted["label"] and abs(answer["score"] - wanted["score"]) <= 1e-5


def test_tf_serving_s_metadata_signature_name_classify_and_regress_answer_as_tf_serving_does(served):
    running, base = served
    labels = running.request("GET", "/labels")[1]["labels"]
    photo = photos()[0].read_bytes()
    encoded = base64.b64encode(photo).decode()
    wanted = running.request("POST", "/predict", photo)[1]
    # GET .../metadata: GetModelMetadataResponse in JSON (model_spec, metadata.signature_def).
    for path, version in (("/v1/models/superheroes/metadata", "1"),
                          ("/v1/models/superheroes/versions/1/metadata", "1")):
        status, metadata, _ = running.request("GET", path)
        assert status == 200, metadata
        assert metadata["model_spec"] == {"name": "superheroes", "signature_name": "", "version": version}
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert signature["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
        scores = signature["outputs"]["scores"]
        assert scores["dtype"] == "DT_FLOAT"
        assert [dim["size"] for dim in scores["tensor_shape"]["dim"]] == ["-1", str(len(labels))]
    # signature_name: serving_default is the one answered; any other is TF Serving's 400.
    body = {"signature_name": "serving_default", "instances": [{"b64": encoded}]}
    status, answer, _ = running.request("POST", "/v1/models/superheroes:predict", json.dumps(body))
    assert status == 200 and len(answer["predictions"][0]) == len(labels)
    body["signature_name"] = "nonexistent"
    status, answer, raw = running.request("POST", "/v1/models/superheroes:predict", json.dumps(body))
    assert status == 400 and set(answer) == {"error"} and '"nonexistent" not found' in answer["error"]
    # :classify: each example's [label, score] pairs, best first, as /predict ranks them.
    body = {"examples": [{"image_bytes": {"b64": encoded}}, {"image_bytes": {"b64": encoded}}]}
    status, answer, _ = running.request("POST", "/v1/models/superheroes:classify", json.dumps(body))
    assert status == 200, answer
    assert len(answer["result"]) == 2
    assert [pair[0] for pair in answer["result"][0]] == list(wanted["scores"])
    assert abs(answer["result"][0][0][1] - wanted["score"]) <= 1e-6
    status, answer, _ = running.request("POST", "/v1/models/superheroes/versions/1:regress", json.dumps(body))
    assert status == 501 and "not a regression model" in answer["error"] and ":predict" in answer["error"]


def test_deeply_nested_json_is_a_400_in_one_line_not_a_500_traceback(served):
    running, _ = served
    lines_before = len(running.log.read_text().splitlines())
    for path in ("/v1/models/m:predict", "/v1/models/m:classify"):
        status, answer, raw = running.request("POST", path, b"[" * 1000)
        assert status == 400, raw
        assert "nested too deeply" in answer["error"] and raw.count(b"\n") == 1
    deadline = time.monotonic() + 10  # a request's line is written once its answer has gone

    def lines_of_these():
        return [line for line in running.log.read_text().splitlines()[lines_before:]
                if "/v1/models/m:" in line]

    while len(lines_of_these()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line.split('" ')[1].split()[0] for line in lines_of_these()] == ["400", "400"]
    assert "Traceback" not in "\n".join(running.log.read_text().splitlines()[lines_before:])


def test_camera_frames_are_scored_as_raw_pixels_and_bad_frames_are_refused(served):
    running, _ = served
    model = running.request("GET", "/model")[1]
    assert model["kind"] == "classes" and model["labels"] == running.request("GET", "/labels")[1]["labels"]
    side = model["frame"]["width"]
    assert model["frame"] == {"width": side, "height": side}
    photo = Image.open(photos()[0]).convert("RGB")
    rgba = np.asarray(photo.resize((side, side), Image.Resampling.BILINEAR).convert("RGBA")).tobytes()
    status, answer, _ = running.request("POST", f"/predict/frame?width={side}&height={side}", rgba)
    assert status == 200 and set(answer) == {"label", "score", "scores"}
    assert answer["label"] == running.request("POST", "/predict", photos()[0].read_bytes())[1]["label"]
    for query, body, words in ((f"width={side}&height={side}", rgba[:-1], "bytes"),
                               (f"width={side + 1}&height={side}", rgba + b"\0" * side * 4,
                                "frames"),
                               ("width=0&height=5", b"", "1 to"), ("height=5", b"", "width")):
        status, answer, raw = running.request("POST", f"/predict/frame?{query}", body)
        assert status == 400 and words in answer["error"], raw
