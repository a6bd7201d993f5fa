"""The deployable formats export.sh writes beside retrained_graph.pb, and the photos they need.

int8 calibration uses TRAINING photos only and the accuracy table the TEST split only, both
found again from train_log.json: its content hashes of each split (`split_digests`) over
the photos of its image folder (or labels CSV), so the split is the one the training made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess.data import dataset
from tensorguess.data.images import content_hash, open_regular
from tensorguess.data.labels_csv import read_labels_csv
from tensorguess.errors import TensorGuessError
from tensorguess.model_dir import EXPORTS, SAVED_MODEL, TrainLog

FILES = {"saved_model": SAVED_MODEL, **EXPORTS}
FORMATS = ("tflite", "tflite-int8", "coreml")  # what export.sh writes
CALIBRATION_PHOTOS = 300  # training photos the int8 ranges are measured on


class ExportError(TensorGuessError):
    """The classifier in DIR cannot be exported as asked; the message says what to do."""


def read_graph(graph_path: Path):
    """The GraphDef in `graph_path` (a regular file, never followed into a FIFO), or one line
    saying why not: what both kinds' export reads first."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        with open_regular(graph_path, max_bytes=None) as handle:
            graph_def.ParseFromString(handle.read())
    except OSError as error:
        raise ExportError(f"cannot read {graph_path} ({error.strerror}); train first with "
                          "train.sh") from error
    except Exception as error:
        raise ExportError(f"{graph_path} is not a TensorFlow GraphDef ({error})") from error
    return graph_def


def parse_formats(text: str) -> list[str]:
    """'tflite,coreml' -> ['tflite', 'coreml'] in the order given, each checked."""
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in FORMATS]
    if unknown or not chosen:
        raise ExportError(f"--format takes a comma-separated list of {', '.join(FORMATS)}, not "
                          f"{text!r}")
    return list(dict.fromkeys(chosen))


@dataclass
class SplitPhotos:
    """The photos of the training's splits, found again: path -> label index, per split."""

    labels: list[str]
    root: Path
    parts: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)


def split_photos(train_log: TrainLog, log_path: Path, warn: Callable[[str], None]) -> SplitPhotos:
    """The photos train_log.json's split digests name, in the image folder (or CSV) it trained on."""
    digests = train_log.split_digests
    if not digests:
        raise ExportError(f"{log_path} lists no split (written by an older tensor-guess); train "
                          "again to export int8 and the accuracy table")
    if train_log.labels_csv is not None:
        image_set = read_labels_csv(train_log.labels_csv, warn)
    else:
        image_set = dataset.discover(train_log.image_dir, warn)
    labels = train_log.labels or image_set.labels
    index = {label: i for i, label in enumerate(labels)}
    where = {name: set(values) for name, values in digests.items()}
    found = SplitPhotos(labels=list(labels), root=image_set.root,
                        parts={name: [] for name in where})
    for label in image_set.labels:
        if label not in index:
            continue
        for path in image_set.files[label]:
            try:
                digest = content_hash(path)
            except OSError:
                continue
            for name, members in where.items():
                if digest in members:
                    found.parts[name].append((path, index[label]))
                    break
    return found


def evenly_chosen(items: list, count: int) -> list:
    """Up to `count` of the items, spread evenly from the first to the last, in their order."""
    if len(items) <= count:
        return items
    chosen = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in dict.fromkeys(chosen.tolist())]


def calibration_paths(photos: SplitPhotos, count: int = CALIBRATION_PHOTOS) -> list[Path]:
    """Up to `count` training photos, spread evenly over the (label-ordered) training split."""
    return evenly_chosen([path for path, _ in photos.parts.get("training", [])], count)


def calibration_images(paths: list[Path], size: int) -> Callable:
    """A generator factory of float [S,S,3] images, decoded and resized as guess feeds them."""
    from tensorguess.features.pipeline import decoded_batches

    def images():
        for batch in decoded_batches(paths, size, 32):
            if batch.pixels is not None:
                yield from batch.pixels

    return images
