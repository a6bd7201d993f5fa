"""export.sh's .tflite files carry TFLite metadata that other tools read: MediaPipe Tasks' ImageClassifier
(the newest mediapipe, in a venv of its own) opens the float and the int8 model and names our labels,
with guess's top label on photos the model never trained on; LiteRT still runs both."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from tensorguess.export import tflite_metadata
from tensorguess.export.formats import FILES, split_photos
from tensorguess.model_dir import LABELS, TRAIN_LOG, TrainLog
from tensorguess.score.models import open_classifier

VENV = REPO / ".venv-mediapipe"
REQUIREMENTS = REPO / "requirements-mediapipe.txt"
CLASSIFY = REPO / "tests" / "python" / "mediapipe_classify.py"
PHOTOS = 12  # test-split photos, spread over both labels


@pytest.fixture(scope="session")
def mediapipe_python():
    """The python of .venv-mediapipe, made from requirements-mediapipe.txt when missing or when the
    file changed (its digest is stamped inside); a failed install fails the test, never skips it."""
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    with open(REPO / ".venv-mediapipe.lock", "w") as lock:  # one installer at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
            steps = [[sys.executable, "-m", "venv", "--clear", str(VENV)],
                     [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      "-r", str(REQUIREMENTS)]]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
                if done.returncode != 0:
                    pytest.fail(f"cannot install MediaPipe into {VENV} ({' '.join(step[-3:])}): "
                                f"{(done.stderr or done.stdout)[-2000:]}")
            stamp.write_text(wanted)
    return python


@pytest.fixture(scope="module")
def held_out(exported):
    """Photos of the test split (never trained on), spread evenly: [(path, label index)]."""
    base, _, _ = exported
    photos = split_photos(TrainLog.read(base / TRAIN_LOG), base / TRAIN_LOG, warn=lambda line: None)
    test = photos.parts["testing"]
    chosen = np.linspace(0, len(test) - 1, PHOTOS).round().astype(int)
    return [test[i] for i in dict.fromkeys(chosen.tolist())]


@pytest.fixture(scope="module")
def mediapipe_found(exported, held_out, mediapipe_python) -> dict:
    """MediaPipe's ImageClassifier on both .tflite files and the held-out photos, in one process:
    model file name -> photo -> categories, best first; a model it refuses fails the tests."""
    base, _, _ = exported
    models = [base / FILES[name] for name in ("tflite", "tflite-int8")]
    done = subprocess.run([str(mediapipe_python), str(CLASSIFY), *map(str, models), "--",
                           *(str(path) for path, _ in held_out)], capture_output=True, text=True,
                          timeout=300, check=False,
                          env={**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, f"MediaPipe refused a model: {done.stderr[-3000:]}"
    return {Path(model).name: found for model, found in json.loads(done.stdout.splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def guessed(exported, held_out) -> dict:
    """guess's best label per photo: the .pb, scored as guess.sh scores it (its default --model)."""
    base, _, _ = exported
    with open_classifier(base, "pb") as classifier:
        return {str(result.path): classifier.ranked(result.scores)[0][0]
                for result in classifier.score_files([path for path, _ in held_out])}


class Reader:
    """A table of a FlatBuffer read by the schema's field slots (flatbuffers' own Table), written apart
    from tflite_metadata.py so that a slot written in the wrong place shows."""

    def __init__(self, buffer: bytes, position: int):
        from flatbuffers import table

        self.table = table.Table(bytearray(buffer), position)

    def _at(self, slot: int) -> int:
        return self.table.Offset(4 + 2 * slot)

    def text(self, slot: int) -> str | None:
        at = self._at(slot)
        return self.table.String(at + self.table.Pos).decode() if at else None

    def scalar(self, slot: int, flags):
        at = self._at(slot)
        return self.table.Get(flags, at + self.table.Pos) if at else 0

    def child(self, slot: int) -> Reader | None:
        at = self._at(slot)
        return Reader(self.table.Bytes, self.table.Indirect(at + self.table.Pos)) if at else None

    def children(self, slot: int) -> list[Reader]:
        at = self._at(slot)
        if not at:
            return []
        start = self.table.Vector(at)
        return [Reader(self.table.Bytes, self.table.Indirect(start + 4 * i))
                for i in range(self.table.VectorLen(at))]

    def floats(self, slot: int) -> list[float]:
        from flatbuffers import number_types

        at = self._at(slot)
        start = self.table.Vector(at)
        return [self.table.Get(number_types.Float32Flags, start + 4 * i)
                for i in range(self.table.VectorLen(at))]


def model_metadata(buffer: bytes) -> dict:
    """The fields of the ModelMetadata FlatBuffer MediaPipe's ImageClassifier reads."""
    from flatbuffers import number_types as n

    root = Reader(buffer, int.from_bytes(buffer[:4], "little"))
    (subgraph,) = root.children(3)
    (image,) = subgraph.children(2)
    content = image.child(3)
    assert content.scalar(0, n.Uint8Flags) == tflite_metadata.IMAGE_PROPERTIES
    properties = content.child(1)
    size = properties.child(1)
    (unit,) = image.children(4)
    assert unit.scalar(0, n.Uint8Flags) == tflite_metadata.NORMALIZATION_OPTIONS
    normalization = unit.child(1)
    (scores,) = subgraph.children(3)
    return {"name": root.text(0), "min_parser_version": root.text(7),
            "input": {"color_space": properties.scalar(0, n.Int8Flags),
                      "width": size.scalar(0, n.Uint32Flags), "height": size.scalar(1, n.Uint32Flags),
                      "mean": normalization.floats(0),
                      "std": normalization.floats(1)},
            "output_files": [(f.text(0), f.scalar(2, n.Int8Flags)) for f in scores.children(6)]}


@pytest.mark.parametrize("name", ["tflite", "tflite-int8"])
def test_mediapipe_image_classifier_names_our_labels_with_guess_s_top_label(exported, held_out,
                                                                            mediapipe_found, guessed, name):
    base, _, _ = exported
    labels = (base / LABELS).read_text().splitlines()
    found = mediapipe_found[FILES[name]]
    for path, _ in held_out:
        categories = found[str(path)]
        # Every label, by its name (the associated file), at its index in the scores.
        assert sorted((c["index"], c["name"]) for c in categories) == list(enumerate(labels))
        assert abs(sum(c["score"] for c in categories) - 1) < 0.02  # the softmax, as the metadata says
        assert categories[0]["name"] == guessed[str(path)], (name, path)


def test_the_metadata_reads_back_and_litert_runs_both_files(exported):
    """Our own reading of what MediaPipe reads: the M001 FlatBuffer under TFLITE_METADATA, the
    normalisation (pixel - 0) / 255, the RGB image of the module's size, the labels file named on the
    output and packed, uncompressed, in the zip after the model; LiteRT (ai_edge_litert) runs both."""
    base, _, _ = exported
    labels = (base / LABELS).read_text().splitlines()
    photo = sorted((REPO.parent / "shared" / "datasets" / "superheroes" / "elsa").iterdir())[0]
    with open_classifier(base, "pb") as reference:
        expected = next(reference.score_files([photo])).scores
    for name in ("tflite", "tflite-int8"):
        data = (base / FILES[name]).read_bytes()
        buffer = tflite_metadata.read_metadata(data)
        assert buffer is not None and buffer[4:8] == b"M001"
        found = model_metadata(buffer)
        assert found["min_parser_version"] == "1.0.0" and "classifier" in found["name"]
        assert found["input"] == {"color_space": 1, "width": 224, "height": 224, "mean": [0.0] * 3,
                                  "std": [255.0] * 3}
        assert found["output_files"] == [(LABELS, tflite_metadata.TENSOR_AXIS_LABELS)]
        with zipfile.ZipFile(BytesIO(data)) as archive:
            (info,) = archive.infolist()
            assert info.filename == LABELS and info.compress_type == zipfile.ZIP_STORED  # MediaPipe's rule
            assert archive.read(LABELS).decode().splitlines() == labels
        with open_classifier(base, name) as classifier:
            scores = next(classifier.score_files([photo])).scores
        assert scores.argmax() == expected.argmax()
