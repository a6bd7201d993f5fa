"""What a points stage reads: each labelled photo cut to the stage's input square, its points moved with it.

A stage reads either the whole photo squashed to size x size (as the classes' photos are,
modules.resize_image) or a crop square (head/points_model.crop_box), resampled by one matrix
(point_geometry): the photo's pixels and its points go through the same matrix, so they
stay together exactly. Crops are kept as uint8 (a quarter of float32's memory); a photo is
decoded once for all the crops cut from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tensorguess.data.images import UnreadableImage, read_image
from tensorguess.data.keypoints import Instance
from tensorguess.features.point_geometry import inside, move_points, warp


@dataclass
class Crops:
    """Photos cut to a stage's input: one row per (photo, crop)."""

    images: np.ndarray  # uint8 [N, S, S, 3]; float32 in [0, 1] when cut `exact`
    points: np.ndarray  # float32 [N, K, 2] in the crop's pixels (continuous, corner at 0)
    visible: np.ndarray  # bool [N, K]: labelled, and inside the crop
    matrices: np.ndarray  # float64 [N, 3, 3]: photo pixels -> crop pixels
    source: np.ndarray  # int [N]: which instance (of those given) each row was cut from

    def __len__(self) -> int:
        return len(self.images)

    def normalised(self) -> np.ndarray:
        """The points as a share of the input side, what the heads learn and give."""
        return self.points / self.images.shape[1]

    def floats(self, rows=slice(None)) -> np.ndarray:
        images = self.images[rows]
        return images if images.dtype == np.float32 else images.astype(np.float32) / 255.0


def whole_photo(width: float, height: float, size: int) -> np.ndarray:
    """The matrix of a photo squashed to size x size: x * size / width, y * size / height."""
    return np.diag([size / width, size / height, 1.0])


def cut(instances: Sequence[Instance], matrices: Callable[[int, Instance], list[np.ndarray]] | None,
        size: int, warn: Callable[[str], None], exact: bool = False) -> Crops:
    """Each instance's photo through each of `matrices(index, instance)` into size x size crops;
    with `matrices` None, each whole photo squashed by modules.resize_image (one crop each, the
    very pixels the exported graph and the classes give the network).

    A photo that cannot be decoded now (it changed since it was read) is one line and no crop.
    `exact` keeps the pixels as floats, as the exported graph gives them to the network: what a
    test of the model reads, so that its numbers are the shipped model's.
    """
    from tensorguess.features.modules import resize_image

    images, points, visible, used, sources = [], [], [], [], []
    for index, instance in enumerate(instances):
        wanted = [whole_photo(instance.width, instance.height, size)] if matrices is None \
            else matrices(index, instance)
        if not wanted:
            continue
        try:
            photo = read_image(instance.path)
        except UnreadableImage as error:
            warn(f"tensor-guess: skipping {instance.path}: {error}")
            continue
        stack = np.stack(wanted)
        if matrices is None:
            warped = resize_image(photo, size).numpy()[None]
        else:
            pixels = np.broadcast_to(photo.astype(np.float32) / 255.0, (len(stack), *photo.shape))
            warped = warp(pixels, stack, size).numpy()
        images.append(warped.astype(np.float32) if exact
                      else np.clip(np.rint(warped * 255.0), 0, 255).astype(np.uint8))
        moved = move_points(np.broadcast_to(instance.points, (len(stack), *instance.points.shape)), stack)
        visible.append(instance.labelled[None, :] & inside(moved, size, size))
        points.append(moved.astype(np.float32))
        used.append(stack)
        sources.append(np.full(len(stack), index))
    if not images:
        count = len(instances[0].points) if instances else 0
        return Crops(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, count, 2), np.float32),
                     np.zeros((0, count), bool), np.zeros((0, 3, 3)), np.zeros(0, int))
    return Crops(np.concatenate(images), np.concatenate(points), np.concatenate(visible),
                 np.concatenate(used), np.concatenate(sources))
