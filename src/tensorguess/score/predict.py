"""Load a trained graph, ours or one from the old retrain.py, and score images in batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.data import decode_budget
from tensorguess.data.images import Skipped, UnreadableImage, open_regular, read_image
from tensorguess.errors import TensorGuessError
from tensorguess.features.pipeline import decoded_batches, progress
from tensorguess.model_dir import BOTTLENECK, FINAL_TENSOR, IMAGE_BATCH, INPUT_BYTES
from tensorguess.score import graph_check
from tensorguess.score import tta as test_time


class ClassifierError(TensorGuessError):
    """The graph or labels cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Scored:
    path: Path
    scores: np.ndarray  # one probability per label, in labels-file order
    features: np.ndarray | None = None  # the bottleneck, from graphs of ours, when asked for


class Classifier:
    """A frozen classifier graph with its labels, run in a tf.compat.v1 session.

    Feeding styles, best first: a float image batch (`image_batch:0` in our
    graphs, a [N,S,S,3] float placeholder in TF Hub retrain.py graphs), decoded
    pixels one at a time (`DecodeJpeg:0` in classic Inception graphs, which lets
    any format and EXIF orientation through), or encoded bytes one at a time.
    """

    def __init__(self, graph_path: Path, labels_path: Path, output_name: str = FINAL_TENSOR,
                 trust_graph: bool = False, tta: bool = False):
        import tensorflow as tf

        self.tta = tta  # score each photo as the mean over test_time.VIEWS views (graphs fed batches)

        self.labels = read_labels(labels_path)
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open_regular(graph_path, max_bytes=None) as handle:
                data = handle.read()
            graph_def.ParseFromString(data)
        except OSError as error:
            raise ClassifierError(
                f"cannot read {graph_path} ({error.strerror}); train first with train.sh"
            ) from error
        except Exception as error:
            raise ClassifierError(f"{graph_path} is not a TensorFlow GraphDef ({error})") from error
        # Which model this is, whatever its file is called: guessDir's records name it.
        self.digest = hashlib.sha1(data).hexdigest()
        refused = graph_check.refusal(graph_def, graph_path, trusted=trust_graph)
        if refused:
            raise ClassifierError(refused)
        self.graph = tf.Graph()
        try:
            with self.graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as error:
            raise ClassifierError(
                f"{graph_path} cannot be loaded ({str(error).strip().splitlines()[0][:200]})"
            ) from error
        nodes = {node.name: node for node in graph_def.node}
        if output_name not in nodes:
            raise ClassifierError(
                f"{graph_path} has no tensor {output_name}:0; pass the graph's output name"
            )
        self.output = self.graph.get_tensor_by_name(f"{output_name}:0")
        self.mode, self.input, self.size = self._feeding_style(ancestors(nodes, output_name))
        # Our graphs name the module's output: evaluate compares it with the training photos'.
        self.features = (self.graph.get_tensor_by_name(f"{BOTTLENECK}:0")
                         if self.mode == "batch" and BOTTLENECK in nodes else None)
        classes = self.output.shape[-1]
        if classes is not None and classes != len(self.labels):
            raise ClassifierError(
                f"{labels_path} has {len(self.labels)} labels but {graph_path} scores {classes} "
                "classes; use the labels file written with this graph"
            )
        self.session = tf.compat.v1.Session(graph=self.graph)

    def _feeding_style(self, nodes):
        if IMAGE_BATCH in nodes:
            tensor = self.graph.get_tensor_by_name(f"{IMAGE_BATCH}:0")
            return "batch", tensor, int(tensor.shape[1])
        for node in nodes.values():
            if node.op == "Placeholder" and node.attr["dtype"].type == 1:  # DT_FLOAT
                tensor = self.graph.get_tensor_by_name(f"{node.name}:0")
                if tensor.shape.rank == 4 and tensor.shape[1] and tensor.shape[3] == 3:
                    return "batch", tensor, int(tensor.shape[1])
        if nodes.get("DecodeJpeg") is not None and nodes["DecodeJpeg"].op == "DecodeJpeg":
            return "pixels", self.graph.get_tensor_by_name("DecodeJpeg:0"), None
        if INPUT_BYTES in nodes:
            return "bytes", self.graph.get_tensor_by_name(f"{INPUT_BYTES}:0"), None
        raise ClassifierError(
            "the graph has no input tensor tensor-guess knows (image_batch, DecodeJpeg, "
            "DecodeJpeg/contents or a float image placeholder)"
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def score_files(
        self, paths: list[Path], batch_size: int = 32, show_progress: bool = False,
        with_features: bool = False,
    ) -> Iterator[Scored | Skipped]:
        """Scores for each path, in order, or a Skipped for a file that cannot be read.

        `with_features` also returns each photo's bottleneck, where the graph has one.
        """
        with progress(len(paths), "Classifying", enabled=show_progress) as bar:
            for chunk in self._score_chunks(paths, batch_size, with_features):
                yield from chunk
                bar.update(len(chunk))

    def _score_chunks(self, paths, batch_size, with_features=False):
        if self.mode == "batch":
            fetch_features = with_features and self.features is not None
            for batch in decoded_batches(paths, self.size, batch_size):
                if batch.pixels is None:
                    scores, features = [], None
                else:
                    scores, features = self._run(batch.pixels, fetch_features)
                rows = iter(range(len(scores)))  # the readable photos' rows, in order
                chunk = []
                for path, error in batch.entries:
                    if error:
                        chunk.append(Skipped(path, str(error)))
                        continue
                    row = next(rows)
                    chunk.append(_checked(path, scores[row], None if features is None else features[row]))
                yield chunk
            return
        for path in paths:
            yield [self._score_one(path)]

    def _score_one(self, path: Path) -> Scored | Skipped:
        try:
            # The old graph resizes by itself: a huge JPEG comes reduced (never under 6x the
            # 299 px it wants), within the decode budget that bounds memory.
            pixels = read_image(path, target=299, max_pixels=decode_budget.shared().capacity)
            if self.mode == "bytes":
                with open_regular(path) as handle:  # a regular file, as read_image checked
                    feed = handle.read()
            else:
                feed = pixels
        except UnreadableImage as error:
            return Skipped(path, str(error))
        except OSError as error:  # swapped or gone since it was decoded
            return Skipped(path, f"cannot read the file ({error.strerror or error})")
        try:
            return _checked(path, self._run(feed)[0][0])
        except Exception as error:  # the old graph's own decoder rejected the file
            return Skipped(path, f"the graph could not decode it ({str(error).splitlines()[0]})")

    def _run(self, feed, with_features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(scores [N, labels], and the bottlenecks [N, D] when asked for, else None).

        With `tta`, a batch of pixels is scored as the mean over its views; the bottlenecks
        are those of the photos themselves (view 0).
        """
        count = len(feed) if self.mode == "batch" else 1
        if self.tta and self.mode == "batch":
            feed = test_time.views(feed)
        fetches = [self.output, self.features] if with_features else [self.output]
        values = self.session.run(fetches, {self.input: feed})
        scores = np.asarray(values[0], dtype=np.float64).reshape(-1, len(self.labels))
        if self.tta and self.mode == "batch":
            scores = test_time.mean_over_views(scores, count)
        return scores, (values[1][:count] if with_features else None)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Scores [N, labels] for a float batch [N, S, S, 3] in [0, 1] (graphs fed batches; as
        pixel_batches' classifiers): serve's camera frames come this way."""
        return self._run(pixels)[0]

    def ranked(self, scores: np.ndarray) -> list[tuple[str, float]]:
        return ranked(self.labels, scores)


def ranked(labels: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """(label, score) best first; ties keep the labels-file order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(labels[i], float(scores[i])) for i in order]


def guess_lines(classifier, result: Scored) -> list[str]:
    """guess's lines for one photo: every label and its score, best first."""
    return [f"{label} (score = {score:.5f})" for label, score in classifier.ranked(result.scores)]


def guess_document(classifier, result: Scored) -> dict:
    """guess --json's fields for one photo: the best label, its score, and every label's."""
    ranked = classifier.ranked(result.scores)
    return {"label": ranked[0][0], "score": ranked[0][1], "scores": dict(ranked)}


def _checked(path: Path, scores: np.ndarray, features: np.ndarray | None = None) -> Scored | Skipped:
    """Scores that are probabilities; NaN or infinite ones (a broken graph) are no answer."""
    if not np.all(np.isfinite(scores)):
        return Skipped(path, "the graph gave no usable scores (NaN or infinite); the model is "
                       "broken: train it again")
    return Scored(path, scores, features)


def ancestors(nodes: dict, name: str) -> dict:
    """The nodes `name` depends on (itself included): the part of the graph that runs."""
    found: dict = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in found or current not in nodes:
            continue
        found[current] = nodes[current]
        pending.extend(i.lstrip("^").split(":")[0] for i in nodes[current].input)
    return found


def read_labels(path: Path) -> list[str]:
    """A classifier's labels, one a line in class order, as frozen.labels_bytes lays them out.

    Lines are stripped (retrain.py's rule could end a label in a space) and blank lines
    at the end ignored. A blank line before a label, or a label twice, is refused: it is
    a class with no name or two classes with one (retrain.py's rule gave a folder `猫`
    the label " "), and every label after it would name the wrong class. Only a regular
    file is read, so a FIFO put in its place cannot hang the run.
    """
    try:
        with open_regular(path) as handle:
            text = handle.read().decode("utf-8")
    except OSError as error:
        raise ClassifierError(
            f"cannot read labels file {path} ({error.strerror or error}); train first with train.sh"
        ) from error
    except UnicodeDecodeError as error:
        raise ClassifierError(f"labels file {path} is not UTF-8 text ({error.reason} at byte "
                              f"{error.start}); use the labels file written with the graph") from error
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ClassifierError(f"labels file {path} is empty; train again with train.sh")
    first_line: dict[str, int] = {}
    for number, label in enumerate(labels, start=1):
        if not label:
            raise ClassifierError(
                f"labels file {path} line {number} is blank: a class without a label (the old "
                "label rule kept only a-z and 0-9 of a folder's name); train again with train.sh"
            )
        if label in first_line:
            raise ClassifierError(
                f"labels file {path} has {label!r} on lines {first_line[label]} and {number}: two "
                "classes with one label; train again with train.sh"
            )
        first_line[label] = number
    return labels
