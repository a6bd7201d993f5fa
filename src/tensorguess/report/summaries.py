"""TensorBoard scalars for each evaluation step, written without the tensorboard package.

retrain.py deleted --summaries_dir at start; here the folder is only ever added to:
each run writes into a new `run-<time>` subfolder (with `train/` and `validation/`
inside, as retrain.py had), so runs sit side by side in TensorBoard instead of
being mixed into one line or lost.
"""

from __future__ import annotations

import time
from pathlib import Path

from tensorguess.head.train import EvalPoint


def new_run_folder(summaries_dir: Path) -> Path:
    """A fresh `summaries_dir/run-YYYYmmdd-HHMMSS[-n]` folder; nothing existing is touched."""
    summaries_dir = Path(summaries_dir)
    summaries_dir.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("run-%Y%m%d-%H%M%S")
    attempt = 1
    while True:
        folder = summaries_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            attempt += 1


class ScalarWriter:
    """Writes EvalPoints as TensorBoard scalars: accuracy and cross_entropy, train and validation."""

    def __init__(self, run_folder: Path):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self.folder = Path(run_folder)
        # tf.summary.scalar needs the tensorboard package; tf.summary.write with the scalars
        # plugin's metadata writes exactly the same records and is part of TensorFlow itself.
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self._writers = {name: tf.summary.create_file_writer(str(self.folder / name))
                         for name in ("train", "validation")}

    def _scalar(self, split: str, tag: str, value: float, step: int) -> None:
        import tensorflow as tf

        with self._writers[split].as_default():
            tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=self._metadata)

    def write(self, point: EvalPoint) -> None:
        self._scalar("train", "accuracy", point.train_accuracy, point.step)
        self._scalar("train", "cross_entropy", point.cross_entropy, point.step)
        self._scalar("validation", "accuracy", point.validation_accuracy, point.step)
        self._scalar("validation", "cross_entropy", point.validation_cross_entropy, point.step)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.flush()
            writer.close()
