"""A trained points model as training hands it to export: its stages and the crop rule between them.

A points model is one stage (the whole photo, squashed to the trunk's input as the classes'
photos are) or two: `locate` finds the object on the whole photo, and `points` reads the crop
around what it found. The crop rule (`crop_box`) is the one place that says where the crop
is: training cuts its crops from the labelled points by it, and the exported graph from the
located points, so the points stage sees at inference the framing it learned on.

Coordinates are continuous photo pixels, (0, 0) the top-left pixel's corner (data/keypoints.py).
A stage's head gives points normalised to its input's side: (x, y) in [0, 1], x * W and y * H
in the photo for the whole-photo stage (squashed), x * side + x0 in its crop square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The crop square: the points' extent grown by MARGIN of its longer side on each side.
MARGIN = 0.25


@dataclass
class PointsStage:
    """One network: the module's map at `tap` on a `size` x `size` input, and the head on it."""

    head: object  # head/points_net: HeatmapHead or DirectHead, trained
    size: int  # the trunk's input side in pixels
    tap: str  # the module's node whose output the head reads (features/spatial.find_tap's)


@dataclass
class PointsModel:
    names: list[str]  # the points, in the heads' order
    skeleton: list[tuple[int, int]]  # bones, 0-based
    flip_pairs: list[tuple[int, int]]  # (left, right), 0-based
    points: PointsStage  # on the crop (with locate), else on the whole photo
    locate: PointsStage | None = None  # on the whole photo: where the crop is
    margin: float = MARGIN
    min_side: float = 0.0  # the crop's side is at least this share of the photo's longer side


def crop_box(points: np.ndarray, labelled: np.ndarray, width: float, height: float,
             margin: float = MARGIN, min_side: float = 0.0) -> tuple[float, float, float, float]:
    """The crop square [x0, y0, x1, y1] around one object's points [K, 2] (those `labelled`).

    Centred on the points' extent, of side (1 + 2 margin) x its longer side, and at least
    min_side x the photo's longer side (a point or two, or a flat row of them, still gives
    a crop with context). With no point, the whole photo's square.
    """
    chosen = np.asarray(points, np.float64)[np.asarray(labelled, bool)]
    chosen = chosen[np.isfinite(chosen).all(axis=1)]
    longer = float(max(width, height))
    if not len(chosen):
        return (width - longer) / 2, (height - longer) / 2, (width + longer) / 2, (height + longer) / 2
    low, high = chosen.min(axis=0), chosen.max(axis=0)
    side = max(float((high - low).max()) * (1 + 2 * margin), min_side * longer, 1.0)
    centre_x, centre_y = (low + high) / 2
    return centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2


def crop_transforms(boxes, size: int):
    """ImageProjectiveTransformV3's transforms [N,8] that resample each square box [N,4] to size x size.

    The crop's pixel i has its centre at i + 0.5 of the crop and reads the photo at
    x0 + (i + 0.5) * side / size (continuous coordinates, both ways), so a point at x in the
    crop's normalised coordinates is at x0 + x * side in the photo. The op reads pixel indices
    (a pixel's centre is its index), hence the half-pixel terms: index = x0 + (i + 0.5) s - 0.5.
    """
    import tensorflow as tf

    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scale = (boxes[:, 2] - boxes[:, 0]) / size
    zero = tf.zeros_like(scale)
    return tf.stack([scale, zero, boxes[:, 0] + 0.5 * scale - 0.5,
                     zero, scale, boxes[:, 1] + 0.5 * scale - 0.5, zero, zero], axis=1)


def crop_squares(images, boxes, size: int):
    """float images [N,H,W,C] -> each one's square box [N,4] resampled to [N,size,size,C]: bilinear,
    0 outside the photo (a crop past the border sees black, never a reflected ghost of the object)."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=crop_transforms(boxes, size), output_shape=tf.constant([size, size]),
        fill_value=tf.constant(0.0, images.dtype), interpolation="BILINEAR", fill_mode="CONSTANT")
