"""Score photos that arrive as bytes (HTTP bodies) with a classifier, as guess scores files.

The classifier's interface is files (`score_files`), the one guess, guessDir and
evaluate use, and so is every classifier format: each batch of photos is written
into a private temporary folder under names the server makes up (no request ever
names a file on the server), scored there in one call, and deleted. That costs a
write to the page cache per photo and gives the same decoding as guess.sh: the
format sniffed from the content, EXIF orientation, the decoded-pixel budget shared
by the decoding threads, the refusal of photos declaring more than 200 megapixels.
A camera frame (answers.Frame: pixels the page drew) goes straight to the graph instead.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.data.images import Skipped, sniff_format
from tensorguess.serve.answers import ClassesAnswers, Frame, PointsAnswers

SUPPORTED = "JPEG, PNG, GIF, BMP or WebP"


@dataclass(frozen=True)
class BadPhoto(Exception):
    """A photo the server will not score: the HTTP status and a one-line reason."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def check_photo(photo: bytes, what: str = "the request body") -> None:
    """Refuse at once, before it takes a place in the queue, what cannot be a photo."""
    if not photo:
        raise BadPhoto(400, f"{what} is empty; send the photo's bytes (a raw body or a multipart upload)")
    if sniff_format(photo[:16]) is None:
        raise BadPhoto(415, f"{what} is not an image tensor-guess can read (expected {SUPPORTED} content)")


class PhotoScorer:
    """A batch of photos (bytes) and camera frames (Frame) -> a result for each: a dict as guess
    --json's, or a BadPhoto."""

    def __init__(self, answers: ClassesAnswers | PointsAnswers, batch_size: int = 32):
        self.answers = answers
        self.classifier = answers.classifier if isinstance(answers, ClassesAnswers) else answers.scorer
        self.batch_size = batch_size

    def __call__(self, items: list[bytes | Frame]) -> list[dict | BadPhoto]:
        results: list = [None] * len(items)
        frames = [index for index, item in enumerate(items) if isinstance(item, Frame)]
        photos = [index for index, item in enumerate(items) if not isinstance(item, Frame)]
        if frames:
            scored = self.answers.score_frames([items[index] for index in frames])
            for index, result in zip(frames, scored, strict=True):
                results[index] = self._answer(result) if isinstance(result, Skipped) else result
        if photos:
            with tempfile.TemporaryDirectory(prefix="tensor-guess-serve-") as folder:
                paths = [Path(folder) / str(index) for index in photos]
                for path, index in zip(paths, photos, strict=True):
                    path.write_bytes(items[index])
                scored = list(self.classifier.score_files(paths, self.batch_size))
            for index, result in zip(photos, scored, strict=True):
                results[index] = self._answer(result)
        return results

    def warm_up(self) -> None:
        """Score one small made-up photo, so that the first request does not pay for
        TensorFlow's first run of the graph (half a second)."""
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, "PNG")
        self([buffer.getvalue()])
        # and the camera's path, at its size (a points model's: the page's usual frame)
        size = self.answers.frame_size or ((320, 240) if isinstance(self.answers, PointsAnswers) else None)
        if size is not None:
            self([Frame(np.zeros((size[1], size[0], 3), np.uint8))])

    def _answer(self, result) -> dict | BadPhoto:
        if isinstance(result, Skipped):
            # Pillow's refusal of a decompression bomb (too many pixels): the photo is too
            # large, as an oversized body is; anything else is broken data.
            status = 413 if result.reason.startswith("too large") else 422
            return BadPhoto(status, f"the photo cannot be scored: {result.reason}")
        return self.answers.answer(result)
