"""Affine maps in continuous pixel coordinates: points and images moved by one 3x3 matrix.

Coordinates: (x, y), x to the right, y down, (0, 0) the top-left CORNER of the top-left
pixel; pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is (i + 0.5, j + 0.5). COCO's
keypoints and resize_image's x*S/W scaling use these. A matrix M maps the point (x, y) of
its input to M @ (x, y, 1) of its output; matrices compose by product (crop, then augment:
augment @ crop), and one resampling then does both.

ImageProjectiveTransformV3 works in pixel INDICES (centres at integers) and maps each output
index to the input index it samples, so its transform is shift(-0.5) @ inverse(M) @
shift(+0.5): with that, a point and the image content under it move together exactly.

The locate-then-crop pipeline's crop is such a matrix too (crop_matrix): training (jittered
boxes) and inference (back_to_photo, its inverse) share it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def move_points(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Points [..., K, 2] through one matrix [3,3] or one per leading row ([N,3,3] for [N,K,2])."""
    points = np.asarray(points, np.float64)
    matrices = np.asarray(matrices, np.float64)
    linear, offset = matrices[..., :2, :2], matrices[..., :2, 2]
    return np.einsum("...ij,...kj->...ki", linear, points) + offset[..., None, :]


def back_to_photo(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points of a crop (or any output) back to the photo the matrix was applied to."""
    return move_points(points, np.linalg.inv(np.asarray(matrix, np.float64)))


def inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whether each point [..., 2] lies on a pixel of a width x height image: 0 <= x < width, 0 <= y < height.

    NaN (an unlabelled point) is outside.
    """
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def resampler_transforms(matrices: np.ndarray) -> np.ndarray:
    """[N,3,3] input -> output maps as ImageProjectiveTransformV3's [N,8] output index -> input index."""
    to_index, to_continuous = translation(-0.5, -0.5), translation(0.5, 0.5)
    sampling = to_index @ np.linalg.inv(np.asarray(matrices, np.float64)) @ to_continuous
    sampling = sampling / sampling[:, 2:3, 2:3]  # the op's last entry is 1 (exactly 1 for an affine map)
    return sampling.reshape(-1, 9)[:, :8].astype(np.float32)


def warp(images, matrices: np.ndarray, size: int | tuple[int, int], fill: float = 0.0):
    """[N,H,W,C] images (numpy or tf.Tensor) through one matrix each, into [N,size,size,C] (a tf.Tensor).

    size is a side or (height, width). Bilinear; what no input pixel covers is `fill`, a
    constant: reflection would draw mirrored body parts at the borders.
    """
    import tensorflow as tf

    height, width = (size, size) if isinstance(size, int | np.integer) else size
    return _resample()(tf.convert_to_tensor(images, tf.float32), resampler_transforms(matrices),
                       tf.constant([height, width], tf.int32), tf.constant(fill, tf.float32))


def resample(images, transforms, output_shape, fill):
    """ImageProjectiveTransformV3 over a batch, in one op (for use inside other tf.functions too)."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=output_shape, fill_value=fill,
        interpolation="BILINEAR", fill_mode="CONSTANT")


@functools.cache
def _resample():
    import tensorflow as tf

    return tf.function(resample, input_signature=[
        tf.TensorSpec([None, None, None, None], tf.float32), tf.TensorSpec([None, 8], tf.float32),
        tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float32)])


@dataclass(frozen=True)
class CropJitter:
    """A crop square moved by (dx, dy) times its side and its side multiplied by scale."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


def draw_crop_jitter(rng: np.random.Generator, centre: float = 15.0, scale: float = 20.0) -> CropJitter:
    """The crop stage's training boxes: the centre moved up to centre % of the side, the side scale %."""
    dx, dy = rng.uniform(-centre / 100, centre / 100, size=2)
    return CropJitter(float(dx), float(dy), float(1 + rng.uniform(-scale / 100, scale / 100)))


def crop_matrix(box: Sequence[float], out_size: int, jitter: CropJitter | None = None) -> np.ndarray:
    """Photo pixels -> an out_size x out_size crop of the square around box [x0, y0, x1, y1].

    The square has the box's centre and its longer side (the shorter side is padded, so the
    crop keeps the photo's aspect); jitter moves and resizes it. Where the square leaves the
    photo, warp fills the crop with its constant.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    if not np.isfinite([x0, y0, x1, y1]).all() or side <= 0:
        raise ValueError(f"a crop box needs finite corners and a positive size, not {list(box)}")
    jitter = jitter or CropJitter()
    centre_x, centre_y = (x0 + x1) / 2 + jitter.dx * side, (y0 + y1) / 2 + jitter.dy * side
    side *= jitter.scale
    zoom = out_size / side
    return np.diag([zoom, zoom, 1.0]) @ translation(side / 2 - centre_x, side / 2 - centre_y)
