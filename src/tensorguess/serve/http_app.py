"""serve's HTTP API and page, as an ASGI application (Starlette), over a classes or a points model.

    GET  /                          the page (serve/page/): photos and the camera, scored
    POST /predict                   a photo (raw body or a multipart upload) -> as guess --json:
                                    {"label", "score", "scores"}, best first (classes), or
                                    {"box", "score", "keypoints"} (points)
    POST /predict/frame?width=W&height=H   a camera frame's raw pixels (RGBA or RGB, row by row),
                                    the page's lean path: the same answer as /predict
    POST /v1/models/NAME:predict    TF Serving's REST API: {"instances": [{"b64": ...}]} ->
                                    {"predictions": [[one score per label], ...]}
    POST /v1/models/NAME:classify   TF Serving's classify: {"examples": [{"image_bytes": {"b64": ...}}]}
                                    -> {"result": [[[label, score], ...], ...]} (classes; points: 501)
    POST /v1/models/NAME:regress    501: neither kind is a regression model
    GET  /v1/models/NAME            TF Serving's model status
    GET  /v1/models/NAME/metadata   TF Serving's metadata: model_spec and the signature_def served
    GET  /model                     what the page needs: the kind, labels or point names, the
                                    frame size, the skeleton
    GET  /labels, GET /healthz

Every error is a status and one line of JSON, `{"error": "..."}`. Limits: the body
size, a timeout for reading the body and for the answer, the queue of the batcher
(503 when it is full). One line on stderr per request; a client gone before its body
arrived is one of them, logged 499 (nginx's "client closed request"), not a server error.
Every answer carries the page's security headers (SECURITY_HEADERS), so that no route
serving the page's files, / or /page/index.html, can come without them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tensorguess import strict_json
from tensorguess.data.images import printable
from tensorguess.serve.access import Access, AccessGuard
from tensorguess.serve.answers import (
    MAX_FRAME_SIDE,
    SERVING_DEFAULT,
    FrameRefused,
    answers_for,
    frame_of,
    signature_def,
)
from tensorguess.serve.batcher import Batcher, QueueFull
from tensorguess.serve.limits import Limits
from tensorguess.serve.photo_scorer import BadPhoto, PhotoScorer, check_photo

PAGE = Path(__file__).resolve().parent / "page"
# The page loads nothing but its own files: it works offline, and a photo's name
# shown on it cannot bring in a script.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
# On every answer: the policy above; no guessing a file's type from its bytes; no address
# (which may hold ?token=) sent on to another site.
SECURITY_HEADERS = ((b"content-security-policy", PAGE_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"))
CLIENT_GONE = 499  # nginx's status for a client that closed its connection before the answer


def build_app(classifier, limits: Limits | None = None, log: Callable[[str], None] | None = None,
              access: Access | None = None, camera=None):
    """The ASGI app serving `classifier`: a classes model (predict.Classifier's interface:
    score_files, labels, ranked) or a points model (score.points.PointsScorer); with `access`, only
    requests that name this server (and carry its token, if it has one); `camera`: what scores the
    camera's frames (serve.camera_model.CameraModel). kinds' serve_app for both."""
    limits = limits or Limits()
    answers = answers_for(classifier, camera)
    scorer = PhotoScorer(answers, limits.max_batch)
    scorer.warm_up()
    batcher = Batcher(scorer, limits.max_batch, limits.batch_wait_ms / 1000, limits.queue_size)
    api = _Api(answers, scorer, batcher, limits, getattr(camera, "digest", None))

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    routes = [
        Route("/", api.page, methods=["GET"]),
        Route("/predict", api.predict, methods=["POST"]),
        Route("/predict/frame", api.predict_frame, methods=["POST"]),
        Route("/model", api.model, methods=["GET"]),
        *(Route(f"/v1/models/{{name}}{version}:{verb}", handler, methods=["POST"])
          for version in ("", "/versions/{version}")
          for verb, handler in (("predict", api.tf_serving_predict), ("classify", api.tf_serving_classify),
                                ("regress", api.tf_serving_regress))),
        Route("/v1/models/{name}/metadata", api.tf_serving_metadata, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version}/metadata", api.tf_serving_metadata, methods=["GET"]),
        Route("/v1/models/{name}", api.tf_serving_status, methods=["GET"]),
        Route("/labels", api.labels, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Mount("/page", StaticFiles(directory=PAGE), name="page"),
    ]
    handlers = {404: _not_found, 405: _not_allowed, Exception: _failed}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.batcher = batcher
    guarded = AccessGuard(app, access) if access is not None else app
    return RequestLog(SecurityHeaders(guarded), log or _stderr)


def error(status: int, message: str) -> Response:
    if status == CLIENT_GONE:
        return Response(status_code=status)  # for the log only: nobody is left to read a message
    return json_response({"error": message}, status)


def json_response(document, status: int = 200) -> Response:
    return Response(strict_json.dumps(document) + "\n", status, media_type="application/json")


async def _not_found(request: Request, exc) -> Response:
    return error(404, f"no such page: {printable(request.url.path)} (see GET / for the page, "
                      "POST /predict for the API)")


async def _failed(request: Request, exc) -> Response:
    """Any error not foreseen: a 500 in one line of JSON too (the traceback goes to stderr)."""
    return error(500, f"the server failed on this request ({type(exc).__name__}); see its log")


async def _not_allowed(request: Request, exc) -> Response:
    return error(405, f"{request.method} is not allowed on {printable(request.url.path)}")


class _Api:
    def __init__(self, answers, scorer: PhotoScorer, batcher: Batcher, limits: Limits,
                 camera_digest: str | None = None):
        self.answers = answers
        self.classifier = scorer.classifier
        self.scorer = scorer
        self.batcher = batcher
        self.limits = limits
        self.camera_digest = camera_digest or getattr(self.classifier, "digest", None)

    async def page(self, request: Request) -> Response:
        return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})

    async def labels(self, request: Request) -> Response:
        return json_response({"labels": self.answers.labels})

    async def model(self, request: Request) -> Response:
        return json_response(self.answers.page_info())

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "kind": self.answers.kind, "labels": len(self.answers.labels),
                              "model": getattr(self.classifier, "digest", None),
                              "camera_model": self.camera_digest,  # the file that scores the frames
                              "queued": self.batcher.queue.qsize(),
                              "photos_scored": self.batcher.photos_scored, "batches": self.batcher.batches,
                              "largest_batch": self.batcher.largest_batch})

    async def predict(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            photo = await self._photo_of(request, body)
            check_photo(photo)
            answers = await self._scored([photo])
        except BadPhoto as bad:
            return error(bad.status, bad.message)
        return json_response(answers[0])

    async def predict_frame(self, request: Request) -> Response:
        """A camera frame: its pixels as the page's canvas holds them, scored without decoding."""
        try:
            width, height = (_frame_side(request.query_params.get(side), side)
                             for side in ("width", "height"))
            box = _frame_box(request.query_params.get("box"))
            body = await self._body(request)
            try:
                frame = frame_of(body, width, height, box)
                self.answers.check_frame(frame)
            except FrameRefused as refused:
                raise BadPhoto(400, str(refused)) from None
            answers = await self._scored([frame], "the frame")
        except BadPhoto as bad:
            return error(bad.status, bad.message)
        return json_response(answers[0])

    async def tf_serving_predict(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            photos = self._instances(body, "instances")
            answers = await self._scored(photos, "instance {}")
        except BadPhoto as bad:
            return error(bad.status, bad.message)
        return json_response({"predictions": [self.answers.prediction(a) for a in answers]})

    async def tf_serving_classify(self, request: Request) -> Response:
        """TF Serving's Classify: each example's [label, score] pairs, best first."""
        if self.answers.kind != "classes":
            return error(501, f"this server serves a {self.answers.kind} model, which classifies nothing: "
                              f"POST {printable(request.url.path).replace(':classify', ':predict')} instead")
        try:
            body = await self._body(request)
            photos = self._instances(body, "examples")
            answers = await self._scored(photos, "example {}")
        except BadPhoto as bad:
            return error(bad.status, bad.message)
        return json_response({"result": [self.answers.classification(a) for a in answers]})

    async def tf_serving_regress(self, request: Request) -> Response:
        return error(501, f"this server serves a {self.answers.kind} model, not a regression model: "
                          "TF Serving's :regress is not implemented; POST "
                          f"{printable(request.url.path).replace(':regress', ':predict')} instead")

    async def tf_serving_metadata(self, request: Request) -> Response:
        """TF Serving's GetModelMetadataResponse, in its JSON form: the signature this server answers."""
        return json_response({"model_spec": {"name": request.path_params["name"], "signature_name": "",
                                             "version": request.path_params.get("version", "1")},
                              "metadata": {"signature_def": signature_def(self.answers)}})

    async def tf_serving_status(self, request: Request) -> Response:
        return json_response({"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

    async def _body(self, request: Request) -> bytes:
        """The whole body, within the size cap and the timeout."""
        limit = self.limits.max_body_bytes
        too_large = BadPhoto(413, "the request body is larger than the limit of "
                                  f"{self.limits.max_body_mb:g} MB (serve's --max_body_mb)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large  # refused before a byte of it is read
        chunks: list[bytes] = []

        async def read() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), self.limits.timeout_s)
        except ClientDisconnect:  # nobody is left to answer: the log's line says it, nothing more
            raise BadPhoto(CLIENT_GONE, "the client closed the connection before its body arrived") from None
        except TimeoutError:
            raise BadPhoto(408, f"the request body did not arrive within {self.limits.timeout_s:g} s "
                                "(serve's --timeout)") from None
        return b"".join(chunks)

    async def _photo_of(self, request: Request, body: bytes) -> bytes:
        """The photo of a /predict request: the body itself, or the one file of a multipart form."""
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return body

        async def stream():
            yield body
            yield b""

        try:
            form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16,
                                         max_part_size=self.limits.max_body_bytes).parse()
        except MultiPartException as problem:
            raise BadPhoto(400, f"the multipart upload cannot be read ({problem.message}); send one "
                                "photo as a file field") from None
        try:
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if not files:
                raise BadPhoto(400, "the multipart upload holds no file; send the photo as a file field "
                                    "(curl -F image=@photo.jpg)")
            return await files[0].read()
        finally:
            await form.close()

    def _instances(self, body: bytes, key: str) -> list[bytes]:
        """The photos of a TF Serving request: {"instances": [{"b64": ...}, ...]} (`key` "examples"
        for :classify); an instance may also name the SavedModel's input: {"image_bytes": {"b64": ...}}.
        A `signature_name` other than serving_default is refused as TF Serving refuses it."""
        wanted = f'{{"{key}": [{{"b64": "<the photo, base64>"}}]}}'
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as problem:
            raise BadPhoto(400, f"the request body is not JSON ({str(problem)[:120]}); "
                                f"send {wanted}") from None
        except RecursionError:  # "[" * 1000: Python's parser gives up; a client's mistake, not ours
            raise BadPhoto(400, "the request body's JSON is nested too deeply to read; "
                                f"send {wanted}") from None
        signature = document.get("signature_name", SERVING_DEFAULT) if isinstance(document, dict) else None
        if signature not in (SERVING_DEFAULT, "", None):
            shown = printable(str(signature))[:80]
            raise BadPhoto(400, f'Serving signature name: "{shown}" not found in signature def; this server '
                                f'answers "{SERVING_DEFAULT}" (a photo\'s bytes in)')
        instances = document.get(key) if isinstance(document, dict) else None
        if not isinstance(instances, list) or not instances:
            raise BadPhoto(400, f'the request holds no "{key}" list; send {wanted}')
        if len(instances) > self.limits.queue_size:
            raise BadPhoto(413, f"{len(instances)} instances in one request; at most "
                                f"{self.limits.queue_size} (serve's --queue_size)")
        photos = []
        for index, instance in enumerate(instances):
            if isinstance(instance, dict) and isinstance(instance.get("image_bytes"), dict):
                instance = instance["image_bytes"]  # the SavedModel's input, named
            encoded = instance.get("b64") if isinstance(instance, dict) else None
            if not isinstance(encoded, str):
                raise BadPhoto(400, f'instance {index} is not {{"b64": "<the photo, base64>"}}')
            try:
                photo = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise BadPhoto(400, f"instance {index} is not valid base64") from None
            check_photo(photo, f"instance {index}")
            photos.append(photo)
        return photos

    async def _scored(self, photos: list[bytes], name: str = "the photo") -> list[dict]:
        """Each photo's answer, scored by the batcher; BadPhoto for the first that has none."""
        tasks = [asyncio.ensure_future(self.batcher.submit(photo)) for photo in photos]
        try:
            answers = await asyncio.wait_for(asyncio.gather(*tasks), self.limits.timeout_s)
        except QueueFull:
            raise BadPhoto(503, f"the server is busy: {self.limits.queue_size} photos are waiting to be "
                                "scored (serve's --queue_size); try again shortly") from None
        except TimeoutError:
            raise BadPhoto(504, f"no scores within {self.limits.timeout_s:g} s (serve's --timeout)") from None
        except Exception as problem:  # the scorer failed (a full temporary folder...): said, not hidden
            text = str(problem).strip().splitlines()[0][:200] if str(problem).strip() else ""
            text = text or type(problem).__name__
            raise BadPhoto(500, f"scoring failed ({text}); the server goes on") from None
        finally:
            for task in tasks:
                task.cancel()  # the others, when one failed: they give up their places
        for index, answer in enumerate(answers):
            if isinstance(answer, BadPhoto):
                where = name.format(index)
                raise BadPhoto(answer.status, answer.message.replace("the photo", where, 1))
        return answers


def _frame_box(value: str | None) -> tuple[float, float, float, float] | None:
    """box=x0,y0,x1,y1 (the last answer's next_box), or None when not given."""
    if value is None:
        return None
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 4 or not all(math.isfinite(number) for number in numbers):
        raise BadPhoto(400, f"box= takes four numbers x0,y0,x1,y1 (the last answer's next_box), not "
                            f"{printable(value[:60])!r}")
    return numbers  # type: ignore[return-value]


def _frame_side(value: str | None, side: str) -> int:
    if value is None or not value.isdigit() or not 1 <= int(value) <= MAX_FRAME_SIDE:
        raise BadPhoto(400, f"a frame needs its {side} in the address, 1 to {MAX_FRAME_SIDE} pixels: "
                            "POST /predict/frame?width=W&height=H with W*H*4 bytes (RGBA)")
    return int(value)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class SecurityHeaders:
    """ASGI middleware: SECURITY_HEADERS on every answer (a header the app set itself is kept)."""

    def __init__(self, app):
        self.app = app

    def __getattr__(self, name):  # app.state and friends, for tests
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_secured)


class RequestLog:
    """ASGI middleware: one line per request, `client "METHOD path" status bytes ms`, after its answer."""

    def __init__(self, app, log: Callable[[str], None]):
        self.app = app
        self.log = log

    def __getattr__(self, name):  # app.state and friends, for tests
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        answer = {"status": 500, "bytes": 0}

        async def send_noted(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_noted)
        finally:
            client = scope.get("client") or ("-", 0)
            path = scope.get("path", "") + ("?" if scope.get("query_string") else "")
            self.log(f'{client[0]}:{client[1]} "{scope.get("method")} {printable(path)}" {answer["status"]} '
                     f'{answer["bytes"]} B {(time.perf_counter() - started) * 1000:.1f} ms')
