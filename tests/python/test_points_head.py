"""The points heads: soft-argmax, the peak's mass, the masked loss, and dots on real photos learned
through the real MobileNet v1 trunk."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from conftest import MOBILENET_V1, SIGN_DIGITS

from tensorguess.features.modules import resolve
from tensorguess.features.pipeline import decoded_batches
from tensorguess.features.spatial import SpatialTrunk
from tensorguess.head.points_net import (
    DIRECT,
    HEATMAP,
    PointsHeadSpec,
    gaussian_targets,
    jensen_shannon,
    make_head,
    peak_mass,
    soft_argmax,
)
from tensorguess.head.points_train import PointSet, PointsSchedule, predict, train_points_head


def one_hot_logits(cells: list[tuple[int, int]], side: int = 8, sharpness: float = 40.0):
    """Logits [1, side, side, 1] peaked (equally) at each (row, column) of `cells`."""
    logits = np.zeros((1, side, side, 1), np.float32)
    for row, column in cells:
        logits[0, row, column, 0] = sharpness
    return tf.constant(logits)


def test_soft_argmax_reads_cell_centres_and_averages_peaks():
    points, probabilities = soft_argmax(one_hot_logits([(5, 3)]))
    np.testing.assert_allclose(points.numpy()[0, 0], [(3 + 0.5) / 8, (5 + 0.5) / 8], atol=1e-6)
    assert peak_mass(probabilities, 1.5).numpy()[0, 0] == pytest.approx(1.0)
    # Two equal peaks far apart: the point lands between them, and the confidence says so.
    points, probabilities = soft_argmax(one_hot_logits([(1, 1), (1, 6)]))
    np.testing.assert_allclose(points.numpy()[0, 0], [4 / 8, 1.5 / 8], atol=1e-6)
    assert peak_mass(probabilities, 1.5).numpy()[0, 0] == pytest.approx(0.5)


def test_the_gaussian_target_is_centred_and_normalised():
    truth = tf.constant([[[0.3, 0.6]]], tf.float32)  # (x, y): cell (row 4.3, column 1.9) of 8x8
    target = gaussian_targets(truth, 8, 8, 1.0)
    assert float(tf.reduce_sum(target)) == pytest.approx(1.0)
    points, _ = soft_argmax(tf.math.log(target))  # the target's own expectation is the point
    np.testing.assert_allclose(points.numpy()[0, 0], [0.3, 0.6], atol=0.01)
    assert float(jensen_shannon(target, target)[0, 0]) == pytest.approx(0.0, abs=1e-6)
    far = gaussian_targets(tf.constant([[[0.95, 0.95]]]), 8, 8, 0.3)
    near = gaussian_targets(tf.constant([[[0.05, 0.05]]]), 8, 8, 0.3)
    assert float(jensen_shannon(near, far)[0, 0]) == pytest.approx(math.log(2), abs=1e-3)


@pytest.mark.parametrize("kind", [HEATMAP, DIRECT])
def test_a_point_not_labelled_teaches_nothing(kind):
    head = make_head(PointsHeadSpec(kind), channels=16, points=3, seed=2)
    maps = tf.random.stateless_uniform([2, 6, 6, 16], [1, 2], maxval=6.0)
    truth = tf.constant(np.random.default_rng(0).uniform(0, 1, (2, 3, 2)), tf.float32)
    visible = tf.constant([[True, False, True], [False, False, True]])
    # Whatever sits at the unlabelled points (outside the photo, or nan) changes nothing.
    elsewhere = tf.where(visible[..., None], truth, tf.constant(np.nan, tf.float32))
    losses, gradients = [], []
    for points in (truth, elsewhere, tf.where(visible[..., None], truth, -5.0)):
        with tf.GradientTape() as tape:
            loss = head.loss(maps, points, visible)
        losses.append(float(loss))
        gradients.append([g.numpy() for g in tape.gradient(loss, head.variables)])
    assert np.isfinite(losses).all() and losses[0] == losses[1] == losses[2]
    for ours, theirs in zip(gradients[0], gradients[1], strict=True):
        assert np.isfinite(ours).all()
        np.testing.assert_array_equal(ours, theirs)
    # ...while moving a labelled point does.
    moved = tf.tensor_scatter_nd_update(truth, [[0, 0]], [[0.9, 0.1]])
    assert float(head.loss(maps, moved, visible)) != losses[0]


SIZE = 160
PHOTOS = 300
VALIDATION, HELD_OUT = 40, 60  # validation picks the epoch; the held-out photos judge it
THROUGH_TRUNK = 24
DOT_RADIUS = 0.03  # of the side: about 5 px at 160
DOT_COLOURS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # point 0 red, point 1 green


class Dots(NamedTuple):
    maps: np.ndarray
    points: np.ndarray
    visible: np.ndarray
    images: np.ndarray  # the first few photos only, for training through the trunk
    trunk: SpatialTrunk


@pytest.fixture(scope="module")
def dots() -> Dots:
    """Real sign-digit photos at 160 px with a red dot, and in half of them a green one (unlabelled
    where absent), at random places; their v1 stride-16 maps, computed once."""
    rng = np.random.default_rng(11)
    paths = sorted(SIGN_DIGITS.glob("*/*.JPG"))
    chosen = [paths[i] for i in rng.choice(len(paths), PHOTOS, replace=False)]
    images = np.concatenate([batch.pixels for batch in decoded_batches(chosen, SIZE, 64)])
    points = rng.uniform(0.1, 0.9, (PHOTOS, 2, 2)).astype(np.float32)
    visible = np.ones((PHOTOS, 2), bool)
    visible[rng.uniform(size=PHOTOS) < 0.5, 1] = False
    centres = (np.arange(SIZE) + 0.5) / SIZE
    for n in range(PHOTOS):
        for k in np.flatnonzero(visible[n]):
            x, y = points[n, k]
            disc = (centres[None, :] - x) ** 2 + (centres[:, None] - y) ** 2 <= DOT_RADIUS ** 2
            images[n][disc] = DOT_COLOURS[k]
    spec, loaded = resolve(str(MOBILENET_V1))
    trunk = SpatialTrunk(spec, loaded, SIZE)
    maps = trunk.maps(images)
    assert maps.shape == (PHOTOS, 10, 10, 512)
    return Dots(maps, points, visible, images[:THROUGH_TRUNK].copy(), trunk)


held_out = slice(PHOTOS - HELD_OUT, PHOTOS)


def splits(dots: Dots) -> tuple[PointSet, PointSet]:
    maps, points, visible = dots.maps, dots.points, dots.visible
    train, validation = slice(0, PHOTOS - HELD_OUT - VALIDATION), slice(PHOTOS - HELD_OUT - VALIDATION,
                                                                         PHOTOS - HELD_OUT)
    return (PointSet(maps[train], points[train], visible[train]),
            PointSet(maps[validation], points[validation], visible[validation]))


def test_the_heatmap_head_learns_dots_on_real_photos(dots):
    maps, points, visible = dots.maps, dots.points, dots.visible
    head = make_head(PointsHeadSpec(HEATMAP), maps.shape[-1], 2, seed=1)
    started = time.perf_counter()
    history = train_points_head(head, *splits(dots), PointsSchedule(epochs=12, patience=4, seed=3))
    predicted, confidence = predict(head, maps[held_out])
    errors = np.linalg.norm(predicted - points[held_out], axis=-1)[visible[held_out]]
    print(f"heatmap head: mean error {errors.mean():.4f} of the side on {errors.size} held-out dots, "
          f"{len(history)} epochs in {time.perf_counter() - started:.1f} s")
    assert errors.mean() < 0.05
    # The head was left at its best epoch.
    validation = splits(dots)[1]
    kept = np.linalg.norm(predict(head, validation.inputs)[0] - validation.points, axis=-1)
    assert min(e.validation_error for e in history) == pytest.approx(kept[validation.visible].mean(),
                                                                     rel=1e-4)
    # A labelled dot is a sharp peak; an absent green dot leaves its map with nothing to peak on.
    present, absent = confidence[visible[held_out]], confidence[:, 1][~visible[held_out][:, 1]]
    assert present.mean() > absent.mean()


def test_training_through_the_trunk_is_training_on_its_maps(dots):
    """Images through the frozen trunk each batch, or the trunk's maps computed once: one training."""
    rows = slice(0, THROUGH_TRUNK)
    schedule = PointsSchedule(epochs=2, batch_size=8, seed=4)
    heads = [make_head(PointsHeadSpec(HEATMAP), 512, 2, seed=6) for _ in range(2)]
    on_maps = train_points_head(heads[0], PointSet(dots.maps[rows], dots.points[rows], dots.visible[rows]),
                                PointSet(dots.maps[:8], dots.points[:8], dots.visible[:8]), schedule)
    on_images = train_points_head(heads[1], PointSet(dots.images, dots.points[rows], dots.visible[rows]),
                                  PointSet(dots.images[:8], dots.points[:8], dots.visible[:8]), schedule,
                                  trunk=dots.trunk)
    for ours, theirs in zip(on_maps, on_images, strict=True):
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-4)
        assert ours.validation_error == pytest.approx(theirs.validation_error, rel=1e-4)
    for ours, theirs in zip(heads[0].variables, heads[1].variables, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-3, atol=1e-5)


def test_direct_regression_learns_what_the_pooled_map_holds():
    """The direct head sees only the map's average: given a task that average answers (two
    channels' means are x and y), it learns it; bench/points_heads.py runs it on the dots."""
    rng = np.random.default_rng(5)
    points = rng.uniform(0.1, 0.9, (200, 1, 2)).astype(np.float32)
    maps = rng.uniform(0, 6, (200, 4, 4, 8)).astype(np.float32)
    maps[..., :2] = 6 * points[:, 0][:, None, None, :] + rng.normal(0, 0.3, (200, 4, 4, 2))
    visible = np.ones((200, 1), bool)
    head = make_head(PointsHeadSpec(DIRECT), 8, 1, seed=1)
    train_points_head(head, PointSet(maps[:150], points[:150], visible[:150]),
                      PointSet(maps[150:], points[150:], visible[150:]),
                      PointsSchedule(epochs=150, learning_rate=1e-2, patience=0, seed=3))
    predicted, confidence = predict(head, maps[150:])
    assert np.linalg.norm(predicted - points[150:], axis=-1).mean() < 0.05  # the centre guess: about 0.3
    assert np.isnan(confidence).all()  # no distribution, no confidence
