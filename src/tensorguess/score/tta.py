"""Test-time augmentation: score a photo as the mean over a few views of it.

The views are the photo itself, its mirror image, and four corner crops of 90% of
each side enlarged back (the mirror of each crop is left out: the mean already has
one flip). What it buys is measured in docs/benchmarks.md ("Test-time
augmentation"), with what it costs: six times the network's work.
"""

from __future__ import annotations

import functools

import numpy as np

CROP = 0.9  # share of each side a corner crop keeps
VIEWS = 6


def views(pixels: np.ndarray) -> np.ndarray:
    """[N,S,S,3] -> [VIEWS*N,S,S,3]: view v of photo k at row v*N + k."""
    return _views()(pixels.astype(np.float32)).numpy()


def mean_over_views(scores: np.ndarray, count: int) -> np.ndarray:
    """[VIEWS*N, C] scores -> [N, C]: each photo's mean over its views."""
    return scores.reshape(VIEWS, count, -1).mean(axis=0)


@functools.cache
def _views():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(pixels):
        size = tf.shape(pixels)[1:3]
        keep = 1 - CROP
        corners = [[0.0, 0.0, CROP, CROP], [0.0, keep, CROP, 1.0], [keep, 0.0, 1.0, CROP],
                   [keep, keep, 1.0, 1.0]]
        count = tf.shape(pixels)[0]
        crops = [tf.image.crop_and_resize(pixels, tf.tile([box], [count, 1]), tf.range(count), size)
                 for box in corners]
        return tf.concat([pixels, tf.reverse(pixels, axis=[2]), *crops], axis=0)

    return run
