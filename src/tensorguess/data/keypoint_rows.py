"""What every keypoint file reader gives back: the file's points and its labelled rows, in the file's frame.

The readers (keypoint_coco, keypoint_tables) only parse; keypoints.py finds the photos, moves
the points into the package's frame and checks them against the photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tensorguess.errors import TensorGuessError

# Where a file's coordinate (0, 0) lies. CORNER: the top-left corner of the top-left pixel, whose
# centre is (0.5, 0.5): continuous coordinates, the package's own frame. PIXEL_CENTRE: the
# centre of the top-left pixel (pixel indices, as DeepLabCut's clicks on matplotlib's imshow).
CORNER = "corner"
PIXEL_CENTRE = "pixel-centre"
ORIGINS = (CORNER, PIXEL_CENTRE)


class KeypointsError(TensorGuessError):
    """A keypoint file that cannot be read as a whole; the message names the file and what to do."""


@dataclass
class LabelledRow:
    """One labelled object as a file writes it: a COCO annotation, a CSV row (an individual's part)."""

    where: str  # how a line names it: "annotation 12", "line 9"
    written_path: str  # the photo's path as the file writes it
    points: np.ndarray  # float64 [K, 2], the file's frame; NaN where not labelled
    labelled: np.ndarray  # bool [K]
    size: tuple[int, int] | None = None  # (width, height), when the file gives them
    bbox: tuple[float, float, float, float] | None = None  # (x, y, width, height), the file's frame


@dataclass
class ParsedFile:
    """A keypoint file's content: names, the bones and pairs it gives (0-based), its rows."""

    format: str  # "coco", "deeplabcut" or "csv"
    names: list[str]
    rows: list[LabelledRow]
    origin: str  # the frame the format's coordinates are in: CORNER or PIXEL_CENTRE
    skeleton: list[tuple[int, int]] | None = None
    flip_pairs: list[tuple[int, int]] | None = None


def unlabelled(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and mask for `count` points none of which is labelled: NaN coordinates, all False."""
    return np.full((count, 2), np.nan), np.zeros(count, dtype=bool)
