"""What the classifiers fed decoded float batches share: the SavedModel's and the TFLite ones.

A subclass sets `labels` and `size` and defines `run(pixels) -> scores` and `close()`;
photos reach `run` decoded and resized by the pipeline that feeds the .pb's
`image_batch:0`, so a photo meets the same pixels in every format.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tensorguess.data.images import Skipped
from tensorguess.features.pipeline import decoded_batches, progress
from tensorguess.score.predict import Scored, _checked, ranked


class PixelBatchClassifier:
    features = None  # these formats give scores only: evaluate checks identical photos only
    labels: list[str]
    size: int

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Scores [N, labels] for a float batch [N, S, S, 3] in [0, 1]."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def score_files(self, paths: list[Path], batch_size: int = 32, show_progress: bool = False,
                    with_features: bool = False) -> Iterator[Scored | Skipped]:
        """Scores for each path, in order, or a Skipped for a file that cannot be read."""
        with progress(len(paths), "Classifying", enabled=show_progress) as bar:
            for batch in decoded_batches(paths, self.size, batch_size):
                scores = [] if batch.pixels is None else self.run(batch.pixels)
                rows = iter(range(len(scores)))
                chunk = [Skipped(path, str(error)) if error else _checked(path, scores[next(rows)])
                         for path, error in batch.entries]
                yield from chunk
                bar.update(len(chunk))

    def ranked(self, scores: np.ndarray) -> list[tuple[str, float]]:
        return ranked(self.labels, scores)
