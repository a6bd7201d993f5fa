"""Score images with the exported SavedModel (its `images` signature), as predict.Classifier does the .pb."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tensorguess.data.images import open_regular
from tensorguess.score import graph_check
from tensorguess.score.pixel_batches import PixelBatchClassifier
from tensorguess.score.predict import ClassifierError, read_labels


class SavedModelClassifier(PixelBatchClassifier):
    """DIR/saved_model's `images` signature: a float batch [N,S,S,3] in [0,1] -> `scores`."""

    def __init__(self, directory: Path, labels_path: Path, temperature: float | None = None,
                 trust_graph: bool = False):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.labels = read_labels(labels_path)
        graph_file = Path(directory) / "saved_model.pb"
        try:
            with open_regular(graph_file, max_bytes=None) as handle:
                data = handle.read()
        except OSError as error:
            raise ClassifierError(f"cannot read {graph_file} ({error.strerror}); train first "
                                  "with train.sh") from error
        self.digest = hashlib.sha1(data).hexdigest()  # the graph actually run (it holds no variables)
        self.temperature = temperature
        saved = saved_model_pb2.SavedModel()
        try:
            saved.ParseFromString(data)
        except Exception as error:
            raise ClassifierError(f"{graph_file} is not a SavedModel ({error})") from error
        for meta_graph in saved.meta_graphs:  # a SavedModel is a program too: checked as the .pb is
            refused = graph_check.refusal(meta_graph.graph_def, graph_file, trusted=trust_graph)
            if refused:
                raise ClassifierError(refused)
        try:
            self.signature = tf.saved_model.load(str(directory)).signatures["images"]
        except (KeyError, ValueError, OSError, tf.errors.OpError) as error:
            raise ClassifierError(f"{directory} has no usable `images` signature ({error}); train "
                                  "again with train.sh") from error
        self.size = int(self.signature.structured_input_signature[1]["images"].shape[1])

    def close(self) -> None:
        self.signature = None

    def run(self, pixels: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        scores = self.signature(images=tf.constant(pixels, tf.float32))["scores"].numpy()
        return np.asarray(scores, np.float64).reshape(-1, len(self.labels))
