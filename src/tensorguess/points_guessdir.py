"""guessDir for a points model (kinds' sort of the points kind): the sort of sort/points_folder.py
with guess --draw's drawings (report/drawings_folder.py), two folders of one stage that stay
independent of each other, so joined here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tensorguess.report.drawings_folder import DrawingsFolder
from tensorguess.score.points import PointsScorer
from tensorguess.sort import points_folder
from tensorguess.sort.folder import SortSummary


def sort(scorer: PointsScorer, source: Path, dest: Path, batch_size: int = 32,
         warn: Callable[[str], None] = print) -> SortSummary:
    """Each photo of `source` copied into `dest`, drawn into dest/drawn, and in dest/keypoints.json."""
    return points_folder.sort(scorer, source, dest, DrawingsFolder, batch_size, warn)
