"""Augmentation for the points kind: the image and its keypoints moved together, by one matrix.

Each example's draw (draw) is a pure function of a seed, like augment.py's variants
(variant_seed keys it the same way: content hash, epoch, recipe identity), but with a
recipe, VERSION and identity of its own, so the classes' variant keys never change. The
training loop calls apply every epoch on a batch at the network's input size.

The geometry is one affine matrix per example from input pixels to output pixels, in
point_geometry's continuous coordinates (pixel i covers [i, i+1)): points move by it in
numpy, the image by ImageProjectiveTransformV3 (bilinear) in one op for the whole batch.
Borders are a constant, never a reflection (which draws ghost hands at the borders).
A point moved out of the frame becomes not visible. A mirror image swaps the left/right
pairs' labels, so it is drawn only where flip_decision allows it.

The colour of the SOURCE is changed before the one resampling, so everything outside the
source stays exactly the fill value: brightness, saturation and hue are one 3x3 matrix per
image (hue turns the chroma plane of YIQ, whose luma is augment.py's grey), contrast
scales about the image's mean, blur (<0) or sharpening (>0) mixes in a 3x3 Gaussian, and
noise is Gaussian, its pattern a window of a fixed bank picked by the draw (drawing fresh
normals costs as much as the resampling itself).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from tensorguess.features import augment
from tensorguess.features.point_geometry import inside, move_points, resample, resampler_transforms
from tensorguess.features.point_geometry import translation as shift

VERSION = 1  # bump when a distortion changes: draws of another version are other draws

# RGB -> YIQ. Its I and Q rows sum to 0, so inverse(YIQ)'s first column is all ones: scaling
# I and Q by s is exactly augment.py's saturation, grey + s (x - grey), grey = the Y row.
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@dataclass(frozen=True)
class PointRecipe:
    """Strengths (0: off). Defaults for hands and animals: the body seen turned, nearer or farther."""

    flip: float = 50.0  # chance, in %, of a mirror image (where flip_decision allows one)
    rotation: float = 30.0  # degrees either way
    scale: float = 25.0  # zoom by a factor within 1 +- that %: in (>1) or out (<1, a constant border)
    stretch: float = 10.0  # x's scale over y's within 1 +- that %
    translation: float = 10.0  # a shift of up to that % of the side, along each axis
    brightness: float = 20.0  # a factor within 1 +- that %
    contrast: float = 20.0
    saturation: float = 20.0
    hue: float = 5.0  # a turn of up to that % of the colour circle either way
    blur: float = 30.0  # a blur or a sharpening of up to that % of a 3x3 Gaussian's effect
    noise: float = 2.0  # Gaussian, of a standard deviation of up to that % of the full range

    # The largest strength each takes (the CLI checks them before any photo is read).
    LIMITS = {"flip": 100, "rotation": 180, "scale": 90, "stretch": 90, "translation": 100,
              "brightness": 100, "contrast": 100, "saturation": 100, "hue": 50, "blur": 100, "noise": 100}

    def identity(self) -> str:
        """The recipe as text: what variant_seed keys each draw with."""
        strengths = ",".join(f"{name}={value:g}" for name, value in asdict(self).items())
        return f"point-augment-v{VERSION}:{strengths}"

    def describe(self) -> str:
        on = [f"{name} {value:g}{'°' if name == 'rotation' else '%'}" for name, value in asdict(self).items()
              if value]
        return ", ".join(on) if on else "no distortion"

    @staticmethod
    def off() -> PointRecipe:
        return PointRecipe(**{item.name: 0.0 for item in fields(PointRecipe)})


@dataclass(frozen=True)
class PointParameters:
    """One example's draw: everything needed to make it, nothing random left."""

    matrix: np.ndarray  # 3x3: input pixel -> output pixel, continuous coordinates
    flipped: bool  # the matrix mirrors: apply swaps the left/right pairs' labels
    brightness: float
    contrast: float
    saturation: float
    hue: float  # a fraction of the colour circle
    blur: float  # <0 blurs, >0 sharpens
    noise: float  # the noise's standard deviation
    noise_seed: int  # picks the noise pattern


def variant_seed(recipe: PointRecipe, digest: str, variant: int) -> int:
    """The seed of draw number `variant` (an epoch, 1, 2...) for the photo whose content hash is digest."""
    return int(augment.variant_key(recipe.identity(), digest, variant)[4:20], 16)


def draw(recipe: PointRecipe, rng_or_seed: np.random.Generator | int, size: int) -> PointParameters:
    """One example's parameters for a size x size image (output the same size).

    The matrix is: mirror about the centre, rotate, scale x and y, shift; all about the
    image's centre (size / 2, size / 2).
    """
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    uniform = rng.uniform  # every draw is made whatever the strength, so each stays put when another changes
    flipped = bool(uniform() < recipe.flip / 100)
    angle = np.deg2rad(uniform(-recipe.rotation, recipe.rotation))
    zoom = 1 + uniform(-recipe.scale, recipe.scale) / 100
    ratio = 1 + uniform(-recipe.stretch, recipe.stretch) / 100
    offset = uniform(-recipe.translation, recipe.translation, size=2) / 100 * size
    brightness, contrast, saturation = (1 + uniform(-s, s) / 100
                                        for s in (recipe.brightness, recipe.contrast, recipe.saturation))
    hue = uniform(-recipe.hue, recipe.hue) / 100
    blur = uniform(-recipe.blur, recipe.blur) / 100
    noise = uniform(0, recipe.noise) / 100
    noise_seed = int(rng.integers(2**62))
    cos, sin = np.cos(angle), np.sin(angle)
    turn = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    scaling = np.diag([zoom * np.sqrt(ratio), zoom / np.sqrt(ratio), 1.0])
    mirror = np.diag([-1.0 if flipped else 1.0, 1.0, 1.0])
    centre = size / 2
    matrix = shift(centre + offset[0], centre + offset[1]) @ scaling @ turn @ mirror @ shift(-centre, -centre)
    return PointParameters(matrix, flipped, float(brightness), float(contrast), float(saturation), float(hue),
                           float(blur), float(noise), noise_seed)


def flip_permutation(count: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which point's position each label takes in a mirror: i <-> j for each (i, j) of pairs (0-based)."""
    order = np.arange(count)
    seen: set[int] = set()
    for first, second in pairs:
        if not (0 <= first < count and 0 <= second < count) or first == second or {first, second} & seen:
            raise ValueError(f"left/right pairs must join two different points of 0..{count - 1}, each point "
                             f"in one pair at most: {list(pairs)}")
        order[first], order[second] = second, first
        seen |= {first, second}
    return order


def names_a_side(name: str) -> bool:
    """Whether a point's name says left or right: a word of it starts so (left_ear, leftear, earLeft)."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)
    return any(word.lower().startswith(("left", "right")) for word in words)


def flip_decision(names: Sequence[str], pairs: Sequence[tuple[int, int]]) -> tuple[bool, str | None]:
    """Whether mirror images may be drawn, and the warning line when not.

    A mirror turns a left ear into a right one: allowed when no name says left or right,
    or when every name that does is in a pair (whose labels apply swaps).
    """
    paired = {index for pair in pairs for index in pair}
    unpaired = [name for index, name in enumerate(names) if names_a_side(name) and index not in paired]
    if not unpaired:
        return True, None
    shown = ", ".join(unpaired[:4]) + (", ..." if len(unpaired) > 4 else "")
    return False, (f"tensor-guess: no mirror images: {len(unpaired)} point name(s) say left or right "
                   f"({shown}) but are in no left/right pair, and a mirror would give them the wrong side; "
                   "give the pairs to turn flip on")


def colour_matrix(parameters: PointParameters) -> np.ndarray:
    """Brightness, saturation and hue as one 3x3 matrix M: a pixel (a row of r, g, b) becomes pixel @ M."""
    angle = 2 * np.pi * parameters.hue
    cos, sin = np.cos(angle) * parameters.saturation, np.sin(angle) * parameters.saturation
    chroma = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return (parameters.brightness * np.linalg.inv(YIQ) @ chroma @ YIQ).T


def apply(images, points: np.ndarray, visible: np.ndarray, drawn: Sequence[PointParameters],
          flip_pairs: Sequence[tuple[int, int]] = (), fill: float = 0.0, size: int | None = None):
    """Augment a batch: (images [N,size,size,3] tf.Tensor, points [N,K,2] float32, visible [N,K] bool).

    images: [N,H,W,3] float32 in [0,1] (numpy or tf.Tensor); points: [N,K,2] in their
    pixels; visible: [N,K]; drawn[n] is example n's draw; flip_pairs: the left/right pairs
    (0-based); size: the output's side (the input's height by default). In a mirrored
    example label i takes the position of its pair's other point. A point outside the
    output's pixels is not visible; its position is still moved, but means nothing.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    count, height, width = (int(v) for v in images.shape[:3])
    size = size or height
    if not count == len(drawn) == len(points) == len(visible):
        raise ValueError(f"{count} images, {len(points)} point sets, {len(visible)} masks and "
                         f"{len(drawn)} draws: one of each per example")
    matrices = np.stack([p.matrix for p in drawn])
    moved = move_points(points, matrices)
    shown = np.asarray(visible, bool).copy()
    order = flip_permutation(moved.shape[1], flip_pairs)
    flipped = np.array([p.flipped for p in drawn], bool)
    moved[flipped] = moved[flipped][:, order]
    shown[flipped] = shown[flipped][:, order]
    shown &= inside(moved, size, size)
    colour = np.stack([colour_matrix(p) for p in drawn]).astype(np.float32)
    scalars = np.array([[p.contrast, p.blur, p.noise] for p in drawn], np.float32)
    noise = _noise_windows(drawn, height * width * 3).reshape(-1, height, width, 3) if scalars[:, 2].any() \
        else np.zeros((count, 1, 1, 3), np.float32)
    out = _colour_then_geometry()(images, colour, scalars, noise, resampler_transforms(matrices),
                                  tf.constant([size, size], tf.int32), tf.constant(fill, tf.float32))
    return out, moved.astype(np.float32), shown


def _noise_windows(drawn: Sequence[PointParameters], length: int) -> np.ndarray:
    """[N, length] standard normals: example n's is the window of the bank that its noise_seed picks."""
    bank = _noise_bank(length)
    starts = [p.noise_seed % (len(bank) - length + 1) for p in drawn]
    return np.stack([bank[start:start + length] for start in starts])


@functools.lru_cache(maxsize=2)  # one size in training (the network's), a second at most for crops
def _noise_bank(length: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(2 * length, dtype=np.float32)


@functools.cache
def _colour_then_geometry():
    import tensorflow as tf

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, 3, 3], tf.float32),
        tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, None, None, 3], tf.float32),
        tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.float32)])
    def run(images, colour, scalars, noise, transforms, output_shape, fill):
        contrast, blur, deviation = (scalars[:, k, None, None, None] for k in range(3))
        # Contrast about the mean of the coloured image, folded into the colour matrix (one pass):
        # that mean is the mean of (the image's channel means @ colour).
        channel_means = tf.reduce_mean(images, axis=[1, 2])[:, None, :]
        mean = tf.reduce_mean(tf.linalg.matmul(channel_means, colour), axis=[1, 2])[:, None, None, None]
        x = tf.einsum("nhwc,ncd->nhwd", images, colour * contrast[:, :, :, 0]) + (1 - contrast) * mean
        x = x + blur * (x - _gaussian_3x3(x))  # blur < 0 moves towards the smooth image, > 0 away from it
        x = tf.clip_by_value(x + deviation * noise, 0.0, 1.0)
        return resample(x, transforms, output_shape, fill)

    return run


def _gaussian_3x3(x):
    """augment.py's 3x3 Gaussian (outer([1,2,1], [1,2,1]) / 16), edges repeated, as two 1-D passes of slices.

    Slices and adds cost a third of what depthwise_conv2d costs on CPU.
    """
    import tensorflow as tf

    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    rows = (padded[:, :-2] + padded[:, 2:]) * 0.25 + padded[:, 1:-1] * 0.5
    return (rows[:, :, :-2] + rows[:, :, 2:]) * 0.25 + rows[:, :, 1:-1] * 0.5
