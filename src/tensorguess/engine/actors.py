"""What runs on Ray's workers: one loaded module (or classifier) per actor, over batches of photos.

Plain classes, no Ray import: Ray Data's map_batches makes each an actor and feeds it
batches as dicts of numpy columns. They decode with the very functions the local
engine uses (features/pipeline.decoded_batches), so features agree to float rounding.
A photo sent as bytes (the `data` column) is written into the actor's private
temporary folder first and read from there like any path, through the same code.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _limit_threads(cpus: int) -> None:
    """TensorFlow on the CPUs Ray gave this actor, not on every core of the node."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        pass  # TensorFlow already ran in this process: keep what it has


@contextmanager
def _readable_paths(batch: dict):
    """The batch's photos as local paths: its own, or its bytes written to a private folder."""
    if "data" not in batch:
        yield [Path(os.fsdecode(bytes(p))) for p in batch["path"]]  # absolute, as bytes
        return
    with tempfile.TemporaryDirectory(prefix="tensorguess-ray-") as folder:
        paths = []
        for k, data in enumerate(batch["data"]):
            path = Path(folder) / f"{k}"
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                handle.write(bytes(data))
            paths.append(path)
        yield paths


def _driver_errors(batch: dict, errors: list[str]) -> None:
    """Photos the driver could not read to send (bytes transport): its reason, not the empty bytes'."""
    for k, why in enumerate(batch.get("unread", ())):
        if why:
            errors[k] = str(why)


class FeatureActor:
    """Bottleneck features of a batch: columns path, vector [N, D] float32, error ('' if none)."""

    def __init__(self, handle: str, input_size: int, value_range: str, identity: str,
                 trusted: bool = False, cpus: int = 1):
        from tensorguess.features import modules
        from tensorguess.features.bottlenecks import feature_width

        _limit_threads(cpus)
        # Checked here too, before loading: this node's copy is the one that runs.
        self.spec, loaded = modules.resolve(handle, input_size, value_range, trusted)
        if self.spec.identity != identity:
            raise RuntimeError(f"the module {handle} on this node is not the driver's (identity "
                               f"{self.spec.identity[:12]}, not {identity[:12]}): install the same one")
        self.loaded = loaded  # the traced function holds the module only weakly
        self.width = feature_width(self.spec, loaded)

    def __call__(self, batch: dict) -> dict:
        from tensorguess.data.images import UnreadableImage
        from tensorguess.features.bottlenecks import local_batches

        count = len(batch["path"])
        vectors = np.zeros((count, self.width), np.float32)
        errors = [""] * count
        with _readable_paths(batch) as paths:
            computed = [entry for entries in local_batches(paths, self.spec, self.loaded, max(count, 1), 1)
                        for entry in entries]
        for k, (_, vector) in enumerate(computed):
            if isinstance(vector, UnreadableImage):
                errors[k] = str(vector)
            else:
                vectors[k] = vector
        _driver_errors(batch, errors)
        return {"path": batch["path"], "vector": vectors, "error": np.array(errors, dtype=object)}


class ScoreActor:
    """A trained graph's scores (and bottlenecks) of a batch, as score/predict.Classifier gives them.

    The graph and labels come as bytes from the driver (which checked the graph), so the
    model need not be on a shared filesystem.
    """

    def __init__(self, graph: bytes, labels: bytes, output_name: str, trust_graph: bool, tta: bool,
                 with_features: bool, cpus: int = 1):
        from tensorguess.score.predict import Classifier

        _limit_threads(cpus)
        self.folder = tempfile.TemporaryDirectory(prefix="tensorguess-ray-model-")
        root = Path(self.folder.name)
        (root / "graph.pb").write_bytes(graph)
        (root / "labels.txt").write_bytes(labels)
        self.classifier = Classifier(root / "graph.pb", root / "labels.txt", output_name,
                                     trust_graph=trust_graph, tta=tta)
        self.with_features = with_features

    def __call__(self, batch: dict) -> dict:
        from tensorguess.data.images import Skipped

        count = len(batch["path"])
        labels = len(self.classifier.labels)
        scores = np.zeros((count, labels), np.float64)
        graph_features = self.classifier.features if self.with_features else None
        width = int(graph_features.shape[-1]) if graph_features is not None else 0
        features = np.zeros((count, width), np.float32)  # one width in every batch, even all-unreadable
        errors = [""] * count
        with _readable_paths(batch) as paths:
            results = self.classifier.score_files(paths, max(count, 1), with_features=self.with_features)
            for k, result in enumerate(results):
                if isinstance(result, Skipped):
                    errors[k] = result.reason
                    continue
                scores[k] = result.scores
                if width and result.features is not None:
                    features[k] = result.features
        _driver_errors(batch, errors)
        out = {"path": batch["path"], "scores": scores, "error": np.array(errors, dtype=object)}
        if self.with_features:
            out["features"] = features
        return out
