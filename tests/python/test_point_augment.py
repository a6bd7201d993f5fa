"""Point augmentation: a drawn dot and its point move together; mirrors swap pairs; borders stay the fill."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED, SIGN_DIGITS
from scipy import ndimage

from tensorguess.data.images import read_image
from tensorguess.features import augment, point_augment, point_geometry
from tensorguess.features.point_augment import PointParameters, PointRecipe

KEYPOINTS = SHARED / "datasets" / "keypoints"
MOUSE = KEYPOINTS / "openfield-mouse"
OFF = PointRecipe.off()
COLOUR = ("brightness", "contrast", "saturation", "hue", "blur", "noise")


def coco(path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
    """(photo float32 [H,W,3] in [0,1], points [K,2], visible [K], names) of the first 8 annotations."""
    document = json.loads(path.read_text())
    names = document["categories"][0]["keypoints"]
    files = {image["id"]: image["file_name"] for image in document["images"]}
    folder = SIGN_DIGITS if path.name.startswith("sign-digits") else path.parent
    found = []
    for annotation in document["annotations"][:8]:
        photo = read_image(folder / files[annotation["image_id"]]).astype(np.float32) / 255
        triples = np.array(annotation["keypoints"], np.float64).reshape(-1, 3)
        found.append((photo, triples[:, :2], triples[:, 2] > 0, names))
    return found


@pytest.fixture(scope="module")
def hands():
    return coco(KEYPOINTS / "sign-digits-hands.json")


@pytest.fixture(scope="module")
def mouse():
    return coco(MOUSE / "keypoints.json")


def only(**strengths) -> PointRecipe:
    return replace(OFF, **strengths)


def geometry_only(matrix: np.ndarray, flipped: bool = False) -> PointParameters:
    return PointParameters(np.asarray(matrix, np.float64), flipped, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0)


def with_dot(photo: np.ndarray, point: np.ndarray) -> np.ndarray:
    """The photo, dimmed to half, with a white 3x3 square centred on the pixel under point."""
    image = photo * 0.5
    column, row = (int(v) for v in np.floor(point))
    image[max(row - 1, 0):row + 2, max(column - 1, 0):column + 2] = 1.0
    return image


def dot_brightness(augmented_dot: np.ndarray, augmented_photo: np.ndarray) -> float:
    return float((augmented_dot - augmented_photo).sum(axis=-1).max())


def dot_centroid(augmented_dot: np.ndarray, augmented_photo: np.ndarray) -> np.ndarray:
    """The centroid (x, y) of the brightest blob of the dot's image minus the photo's."""
    difference = (augmented_dot - augmented_photo).sum(axis=-1)
    blobs, _ = ndimage.label(difference > 0.1 * difference.max())
    blob = blobs == blobs.flat[difference.argmax()]
    weights = np.where(blob, difference, 0)
    rows, columns = np.indices(weights.shape)
    # continuous coordinates: pixel i's centre is i + 0.5
    return np.array([(weights * columns).sum(), (weights * rows).sum()]) / weights.sum() + 0.5


# Each distortion alone, the colour ones together, and everything at once: (recipe, how far a
# dot's centroid may be from its moved point, in px). Rigid moves keep the 3x3 dot's shape
# (measured: 0.11 px at worst); zooms and stretches resample it without antialiasing (0.2).
# Forgetting the half-pixel shifts puts a mirrored dot 1 px off, one turned 30 degrees 0.37 px.
STRONG = {"flip": 100, "rotation": 30, "translation": 10, "scale": 25, "stretch": 10, "brightness": 50,
          "contrast": 50, "saturation": 50, "hue": 25, "blur": 50, "noise": 5}
CASES = {name: (only(**{name: value}), 0.25 if name in ("scale", "stretch") else 0.15)
         for name, value in STRONG.items()}
CASES.update({"colour together": (only(**{name: getattr(PointRecipe(), name) for name in COLOUR}), 0.15),
              "all (the defaults)": (PointRecipe(), 0.25),
              "all, twice the defaults": (PointRecipe(**{name: 2 * value for name, value in
                                                         vars(PointRecipe()).items()}), 0.25)})


@pytest.mark.parametrize("case", CASES)
def test_a_drawn_dot_and_its_point_move_together(hands, case):
    recipe, tolerance = CASES[case]
    errors, left_the_frame = [], 0
    for seed, (photo, points, visible, _) in enumerate(hands):
        size = photo.shape[0]
        # The hand's points, on their pixels' centres, and two near the side edges that a move pushes out.
        points = np.vstack([np.floor(points[visible]), [[2, size / 2], [size - 3, size / 2]]]) + 0.5
        count = len(points)
        drawn = [point_augment.draw(recipe, seed, size)] * (count + 1)
        images = np.stack([with_dot(photo, point) for point in points] + [photo * 0.5])
        out, moved, shown = point_augment.apply(images, np.repeat(points[None], count + 1, 0),
                                                np.ones((count + 1, count), bool), drawn)
        out, moved, shown = out.numpy(), moved[0], shown[0]
        np.testing.assert_allclose(moved, point_geometry.move_points(points, drawn[0].matrix), atol=1e-4)
        np.testing.assert_array_equal(shown, point_geometry.inside(moved, size, size))
        margin = np.minimum(moved, size - moved).min(axis=1)  # how far inside the frame (<0: outside)
        # How far the dot's corners reach from its centre, plus a pixel each for bilinear and blur.
        reach = np.abs(drawn[0].matrix[:2, :2] @ [[1.5, 1.5, -1.5, -1.5], [1.5, -1.5, 1.5, -1.5]]).max() + 2
        for k in range(count):
            if margin[k] >= reach:  # the whole dot inside: it sits on the point
                errors.append(np.abs(dot_centroid(out[k], out[count]) - moved[k]).max())
            elif margin[k] < -reach:  # the whole dot outside: no trace of it, and its point not visible
                left_the_frame += 1
                assert dot_brightness(out[k], out[count]) < 1e-3 and not shown[k]
    assert len(errors) > 100
    assert max(errors) < tolerance, f"{case}: worst {max(errors):.3f} px, mean {np.mean(errors):.3f} px"
    if recipe.translation or recipe.scale:
        assert left_the_frame >= 2  # and those were checked


def test_each_draw_stays_within_its_strength_and_moves_only_its_own_part():
    size, seeds = 100, range(300)
    centre = np.array([[size / 2, size / 2]])

    def matrices(**strength) -> np.ndarray:
        return np.stack([point_augment.draw(only(**strength), seed, size).matrix for seed in seeds])

    def spans(values, low, high) -> bool:  # within [low, high], and reaching near both ends
        margin = (high - low) / 10
        return low <= values.min() < low + margin and high - margin < values.max() <= high

    zooms = matrices(scale=25)
    assert spans(zooms[:, 0, 0], 0.75, 1.25) and np.allclose(zooms[:, 1, 1], zooms[:, 0, 0])  # in and out
    stretches = matrices(stretch=10)
    assert spans(stretches[:, 0, 0] / stretches[:, 1, 1], 0.9, 1.1)
    np.testing.assert_allclose(stretches[:, 0, 0] * stretches[:, 1, 1], 1)  # the area kept
    turns = matrices(rotation=30)
    assert spans(np.degrees(np.arctan2(turns[:, 1, 0], turns[:, 0, 0])), -30, 30)
    np.testing.assert_allclose(np.linalg.det(turns), 1)
    for moved in (zooms, stretches, turns):  # all about the centre
        np.testing.assert_allclose(point_geometry.move_points(centre, moved), np.repeat(centre[None], 300, 0),
                                   atol=1e-9)
    shifts = matrices(translation=10)
    assert spans(shifts[:, 0, 2], -10, 10) and spans(shifts[:, 1, 2], -10, 10)
    np.testing.assert_array_equal(shifts[:, :2, :2], np.repeat(np.eye(2)[None], 300, 0))
    mirrors = [point_augment.draw(only(flip=30), seed, size) for seed in seeds]
    assert 0.22 < np.mean([m.flipped for m in mirrors]) < 0.38
    assert all((np.linalg.det(m.matrix) < 0) == m.flipped for m in mirrors)
    neutral = replace(point_augment.draw(OFF, 0, size), matrix=None, noise_seed=0)
    for name, low, high in [("brightness", 0.8, 1.2), ("contrast", 0.8, 1.2), ("saturation", 0.8, 1.2),
                            ("hue", -0.05, 0.05), ("blur", -0.3, 0.3), ("noise", 0, 0.02)]:
        recipe = only(**{name: getattr(PointRecipe(), name)})
        drawn = [point_augment.draw(recipe, seed, size) for seed in seeds]
        assert spans(np.array([getattr(p, name) for p in drawn]), low, high), name
        assert all(replace(p, matrix=None, noise_seed=0, **{name: getattr(neutral, name)}) == neutral
                   and (p.matrix == np.eye(3)).all() for p in drawn), name


def test_half_a_pixel_exactly_moves_whole_pixels_as_numpy_does():
    """With the +-0.5 shifts a mirror, a quarter turn and a 2x zoom land pixel centres on pixel centres."""
    size = 6
    image = np.random.default_rng(0).uniform(size=(1, size, size, 3)).astype(np.float32)
    centres = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2) + 0.5  # (x, y)
    # x' = y, y' = S - x: numpy's rot90 (counter-clockwise)
    turn = np.array([[0.0, 1, 0], [-1, 0, size], [0, 0, 1]])
    mirror = np.array([[-1.0, 0, size], [0, 1, 0], [0, 0, 1]])
    shifted = np.pad(image[:, 1:, :-2], [(0, 0), (0, 1), (2, 0), (0, 0)])  # 2 right, 1 up
    for matrix, expected in [(mirror, image[:, :, ::-1]), (turn, np.rot90(image, axes=(1, 2))),
                             (point_geometry.translation(2, -1), shifted)]:
        out, moved, _ = point_augment.apply(image, centres[None], np.ones((1, len(centres)), bool),
                                            [geometry_only(matrix)])
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
        # each pixel's value is now under its moved centre
        for (x, y), (new_x, new_y) in zip(centres, moved[0], strict=True):
            if 0 <= new_x < size and 0 <= new_y < size:
                assert out.numpy()[0, int(new_y), int(new_x)].tolist() == image[0, int(y), int(x)].tolist()
    # A 2x zoom about the top-left corner: output pixel 2a+1's centre, 2a + 1.5, comes from input a + 0.75,
    # a quarter of a pixel past input pixel a's centre (a + 0.5): bilinear weights 3/4 and 1/4 on each axis.
    out, _, _ = point_augment.apply(image, centres[None], np.ones((1, len(centres)), bool),
                                    [geometry_only(np.diag([2.0, 2.0, 1.0]))], size=2 * size)
    pixels = image[0]
    expected = (9 * pixels[:-1, :-1] + 3 * pixels[:-1, 1:] + 3 * pixels[1:, :-1] + pixels[1:, 1:]) / 16
    np.testing.assert_allclose(out.numpy()[0, 1:-1:2, 1:-1:2], expected, atol=1e-6)


def test_a_mirror_swaps_the_left_and_right_labels(mouse):
    photo, points, visible, names = mouse[0]
    assert names[1:3] == ["leftear", "rightear"]
    visible = visible.copy()
    visible[2] = False  # the right ear hidden: after the mirror it is the left ear that is hidden
    image = photo[:, :480]  # the square left part (the mouse is in the left third of the arena)
    drawn = [point_augment.draw(only(flip=100), 3, 480)]
    assert drawn[0].flipped
    out, moved, shown = point_augment.apply(image[None], points[None], visible[None], drawn,
                                            flip_pairs=[(1, 2)])
    np.testing.assert_allclose(out.numpy()[0], image[:, ::-1], atol=1e-6)
    mirrored = np.column_stack([480 - points[:, 0], points[:, 1]])
    np.testing.assert_allclose(moved[0], mirrored[[0, 2, 1, 3]], atol=1e-4)  # leftear: the mirrored right ear
    assert shown[0].tolist() == [True, False, True, True]
    unflipped = point_augment.draw(only(flip=0), 3, 480)
    _, kept, _ = point_augment.apply(image[None], points[None], visible[None], [unflipped],
                                     flip_pairs=[(1, 2)])
    np.testing.assert_allclose(kept[0], points, atol=1e-4)
    for bad in ([(1, 1)], [(1, 4)], [(0, 1), (1, 2)], [(-1, 2)]):
        with pytest.raises(ValueError, match="pairs"):
            point_augment.flip_permutation(4, bad)


def test_the_border_is_the_fill_value_never_a_reflection(hands):
    photo = hands[0][0]
    size = photo.shape[0]
    drawn = point_augment.draw(PointRecipe(scale=0, rotation=30), 11, size)  # colours on too
    shrink = point_geometry.translation(size / 2, size / 2) @ np.diag([0.6, 0.6, 1]) \
        @ point_geometry.translation(-size / 2, -size / 2)
    drawn = replace(drawn, matrix=shrink @ drawn.matrix)  # zoomed out: the border is wide
    outs = {fill: point_augment.apply(photo[None], np.zeros((1, 0, 2)), np.zeros((1, 0), bool), [drawn],
                                      fill=fill)[0].numpy()[0] for fill in (0.25, 0.75)}
    # Where each output pixel's centre samples the input, in input pixel indices.
    rows, columns = np.indices((size, size))
    sampled = point_geometry.move_points(np.column_stack([columns.ravel(), rows.ravel()]) + 0.5,
                                         np.linalg.inv(drawn.matrix)).reshape(size, size, 2) - 0.5
    beyond = ((sampled < -1) | (sampled > size)).any(axis=-1)  # not even a neighbour of an input pixel
    within = ((sampled >= 0) & (sampled <= size - 1)).all(axis=-1)  # all four neighbours input pixels
    assert beyond.mean() > 0.3 and within.mean() > 0.3
    for fill, out in outs.items():
        np.testing.assert_allclose(out[beyond], fill, atol=1e-6)
    np.testing.assert_array_equal(outs[0.25][within], outs[0.75][within])  # the fill never reaches in
    assert outs[0.25][within].std() > 0.1  # and there is a photo there


def test_crop_matrix_and_back_to_photo_round_trip(mouse):
    rng = np.random.default_rng(5)
    for _, points, _, _ in mouse[:4]:
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        plain = point_geometry.crop_matrix([x0, y0, x1, y1], 96)
        # The square around the box: its centre is the crop's centre, its longer side the crop's side.
        centre, side = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max(x1 - x0, y1 - y0)
        np.testing.assert_allclose(point_geometry.move_points(centre[None], plain), [[48, 48]], atol=1e-9)
        assert plain[0, 0] == plain[1, 1] == pytest.approx(96 / side)
        for _ in range(20):
            jitter = point_geometry.draw_crop_jitter(rng)
            assert abs(jitter.dx) <= 0.15 and abs(jitter.dy) <= 0.15 and 0.8 <= jitter.scale <= 1.2
            matrix = point_geometry.crop_matrix([x0, y0, x1, y1], 96, jitter)
            moved_centre = centre + side * np.array([jitter.dx, jitter.dy])  # moved by a fraction of the side
            np.testing.assert_allclose(point_geometry.move_points(moved_centre[None], matrix), [[48, 48]],
                                       atol=1e-9)
            assert matrix[0, 0] == matrix[1, 1] == pytest.approx(96 / (side * jitter.scale))
            in_crop = point_geometry.move_points(points, matrix)
            np.testing.assert_allclose(point_geometry.back_to_photo(in_crop, matrix), points, atol=1e-4)
    # An integer box at its own size is a slice of the photo, exactly; past the photo's edge, the fill.
    photo = mouse[0][0]
    crop = point_geometry.warp(photo[None], point_geometry.crop_matrix([600, 100, 680, 140], 80)[None], 80,
                               fill=0.5).numpy()[0]
    np.testing.assert_allclose(crop[:, :40], photo[80:160, 600:640], atol=1e-6)  # the square: y 80..160
    assert (crop[:, 41:] == 0.5).all()
    with pytest.raises(ValueError, match="box"):
        point_geometry.crop_matrix([5, 5, 5, 5], 96)


def test_a_draw_is_a_pure_function_of_its_seed(hands):
    photo, points, visible, _ = hands[1]
    size = photo.shape[0]
    first = point_augment.draw(PointRecipe(), 42, size)
    again = point_augment.draw(PointRecipe(), np.random.default_rng(42), size)
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert replace(first, matrix=None) == replace(again, matrix=None)
    other = point_augment.draw(PointRecipe(), 43, size)
    assert not np.allclose(first.matrix, other.matrix)
    twice = np.stack([photo, photo[::-1]])
    runs = [point_augment.apply(twice, np.stack([points] * 2), np.stack([visible] * 2), [first, other])
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0][0].numpy(), runs[1][0].numpy())
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    alone = point_augment.apply(photo[None], points[None], visible[None], [first])
    # an example's neighbours in the batch change nothing of it
    np.testing.assert_allclose(alone[0].numpy()[0], runs[0][0].numpy()[0], atol=1e-6)
    assert np.abs(runs[0][0].numpy()[0] - photo).mean() > 0.02
    # Every strength off: the photo and its points, up to rounding.
    nothing = point_augment.apply(photo[None], points[None], visible[None],
                                  [point_augment.draw(OFF, 42, size)])
    np.testing.assert_allclose(nothing[0].numpy()[0], photo, atol=1e-5)
    np.testing.assert_allclose(nothing[1][0], points, atol=1e-4)
    # Seeds are keyed like augment's variants, by a recipe identity of its own.
    assert PointRecipe().identity().startswith("point-augment-v1:")
    assert PointRecipe().identity() != augment.Recipe().identity()
    seeds = {point_augment.variant_seed(recipe, digest, variant) for recipe in (PointRecipe(), OFF)
             for digest in ("a" * 40, "b" * 40) for variant in (1, 2)}
    assert len(seeds) == 8


def test_each_colour_draw_does_what_its_name_says(hands):
    photo = hands[2][0] * 0.6 + 0.2  # away from 0 and 1, so nothing clips
    grey = (photo * [0.299, 0.587, 0.114]).sum(axis=-1, keepdims=True)

    def coloured(**values) -> np.ndarray:
        drawn = replace(geometry_only(np.eye(3)), **values)
        return point_augment.apply(photo[None], np.zeros((1, 0, 2)), np.zeros((1, 0), bool),
                                   [drawn])[0].numpy()[0]

    np.testing.assert_allclose(coloured(brightness=1.2), np.clip(photo * 1.2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(coloured(contrast=0.7), (photo - photo.mean()) * 0.7 + photo.mean(), atol=1e-5)
    np.testing.assert_allclose(coloured(saturation=0.5), grey + (photo - grey) * 0.5, atol=1e-5)  # augment's
    turned = coloured(hue=0.5)
    np.testing.assert_allclose((turned * [0.299, 0.587, 0.114]).sum(axis=-1, keepdims=True), grey, atol=1e-5)
    np.testing.assert_allclose(turned, np.clip(grey - (photo - grey), 0, 1), atol=1e-5)  # the opposite hue
    np.testing.assert_allclose(coloured(hue=1.0), photo, atol=1e-5)
    blurred, sharpened = coloured(blur=-1.0), coloured(blur=0.5)
    edges = lambda image: np.abs(np.diff(image, axis=0)).mean()  # noqa: E731
    assert edges(blurred) < 0.7 * edges(photo) and edges(sharpened) > 1.2 * edges(photo)
    noisy, other = coloured(noise=0.05, noise_seed=9), coloured(noise=0.05, noise_seed=10)
    assert (noisy - photo).std() == pytest.approx(0.05, rel=0.05)
    assert abs(np.corrcoef((noisy - photo).ravel(), (other - photo).ravel())[0, 1]) < 0.05  # another pattern


def test_mirrors_are_drawn_only_where_the_names_sides_are_paired():
    hands = ["wrist", "thumb_cmc", "index_finger_tip", "pinky_tip"]
    mouse = ["snout", "leftear", "rightear", "tailbase"]
    assert point_augment.flip_decision(hands, []) == (True, None)  # no side named: a flip keeps every name
    allowed, warning = point_augment.flip_decision(mouse, [])
    assert not allowed
    assert warning.startswith("tensor-guess: no mirror images: 2 point name(s)")
    assert "(leftear, rightear)" in warning
    assert "\n" not in warning
    assert point_augment.flip_decision(mouse, [(1, 2)]) == (True, None)
    face = ["nose", "left_eye", "right_eye", "LeftEar", "earRight"]
    allowed, warning = point_augment.flip_decision(face, [(1, 2)])
    assert not allowed and "2 point name(s) say left or right (LeftEar, earRight)" in warning
    assert point_augment.flip_decision(face, [(1, 2), (3, 4)]) == (True, None)
    assert not any(map(point_augment.names_a_side, ["bright_spot", "upright", "copyright", "eyelid"]))
