"""Distorted variants of training photos, each a pure function of (content, variant, recipe).

retrain.py switched its bottleneck cache off as soon as a distortion was asked for,
and make_image_classifier runs the network over every photo in every epoch. Here a
variant is deterministic: its parameters are drawn from a generator seeded by the
photo's content hash, the variant's number and the recipe's identity, so its
bottleneck is stored under that key like any other (bottlenecks.extract_variants):
a second run computes nothing, and going from 5 to 10 variants computes only the 5
new ones, since variant k does not depend on how many there are.

The distortions are those the body-part project used, each with a strength (0: off),
applied to the image at the network's input size in [0,1]:

- flip: the chance, in %, of a mirror image;
- crop and scale: a window of the image, enlarged back to full size; crop is how
  much of each side may go (in % of the side), scale a further zoom of up to that %;
  the window is placed anywhere the image covers;
- rotation: up to that many degrees either way (borders filled by reflection);
- brightness, contrast, saturation: a factor within +-that %;
- noise: Gaussian, of a standard deviation of up to that % of the full range;
- blur: a blur or a sharpening, of up to that % of a 3x3 Gaussian's effect;
- cutout: a grey square of up to that % of the side, anywhere.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, fields

import numpy as np

VERSION = 1  # bump when a distortion changes: variants of another version are other variants


@dataclass(frozen=True)
class Recipe:
    flip: float = 50.0
    crop: float = 20.0
    scale: float = 20.0
    rotation: float = 10.0
    brightness: float = 20.0
    contrast: float = 20.0
    saturation: float = 20.0
    noise: float = 2.0
    blur: float = 30.0
    cutout: float = 0.0

    # The largest strength each takes (the CLI checks them before any photo is read).
    LIMITS = {"flip": 100, "crop": 90, "scale": 100, "rotation": 180, "brightness": 100,
              "contrast": 100, "saturation": 100, "noise": 100, "blur": 100, "cutout": 90}

    def identity(self) -> str:
        """The recipe as text: part of every variant's key in the feature store."""
        return f"augment-v{VERSION}:" + ",".join(f"{name}={value:g}" for name, value in asdict(self).items())

    def describe(self) -> str:
        on = [f"{name} {value:g}{'°' if name == 'rotation' else '%'}" for name, value in asdict(self).items()
              if value]
        return ", ".join(on) if on else "no distortion"

    @staticmethod
    def off() -> Recipe:
        return Recipe(**{item.name: 0.0 for item in fields(Recipe)})


def variant_key(recipe_identity: str, digest: str, variant: int) -> str:
    """The feature store's key of variant `variant` (1, 2...) of the content `digest`."""
    text = f"{recipe_identity}\0{digest}\0{variant}".encode()
    return "aug-" + hashlib.sha1(text).hexdigest()


@dataclass(frozen=True)
class Parameters:
    """One variant's draw: everything needed to make it, nothing random left."""

    transform: np.ndarray  # 8 floats: output pixel -> input pixel (ImageProjectiveTransformV3)
    brightness: float
    contrast: float
    saturation: float
    blur: float  # <0 blurs, >0 sharpens
    noise: float
    noise_seed: int
    cutout: tuple[int, int, int]  # top, left, side (side 0: none)


def parameters(recipe: Recipe, key: str, size: int) -> Parameters:
    """Draw one variant's parameters from a generator seeded by its key."""
    rng = np.random.default_rng(int(key[4:20], 16))
    uniform = rng.uniform  # every draw is made whatever the strength, so each stays put
    flip = uniform() < recipe.flip / 100
    zoom = 1 / (1 - uniform(0, recipe.crop / 100)) * (1 + uniform(0, recipe.scale / 100))
    angle = np.deg2rad(uniform(-recipe.rotation, recipe.rotation))
    room = (size - size / zoom) / 2  # how far the window's centre may move, in pixels
    shift = uniform(-room, room, size=2)
    factors = [1 + uniform(-strength / 100, strength / 100)
               for strength in (recipe.brightness, recipe.contrast, recipe.saturation)]
    blur = uniform(-recipe.blur / 100, recipe.blur / 100)
    noise = uniform(0, recipe.noise / 100)
    noise_seed = int(rng.integers(2**63))
    side = int(round(uniform(0, recipe.cutout / 100) * size))
    top, left = (int(v) for v in rng.integers(0, max(1, size - side + 1), size=2))
    # Output pixel p maps to input c + shift + R(angle) F (p - c) / zoom, F the mirror.
    centre = (size - 1) / 2
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    mirror = -1.0 if flip else 1.0
    a = np.array([[cos * mirror, -sin], [sin * mirror, cos]])
    offset = np.array([centre, centre]) + shift - a @ np.array([centre, centre])
    transform = np.array([a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1], 0, 0], np.float32)
    return Parameters(transform, factors[0], factors[1], factors[2], blur, noise, noise_seed,
                      (top, left, side))


def distort(images: np.ndarray, drawn: list[Parameters]) -> np.ndarray:
    """[N,S,S,3] float32 in [0,1], image k distorted by drawn[k]; same shape and range."""
    size = images.shape[1]
    transforms = np.stack([p.transform for p in drawn])
    colour = np.array([[p.brightness, p.contrast, p.saturation, p.blur] for p in drawn], np.float32)
    out = _geometry_and_colour()(images.astype(np.float32), transforms, colour, np.int32(size)).numpy()
    for k, p in enumerate(drawn):
        if p.noise > 0:
            noise = np.random.default_rng(p.noise_seed).standard_normal(out[k].shape, dtype=np.float32)
            out[k] = np.clip(out[k] + p.noise * noise, 0, 1)
        top, left, side = p.cutout
        if side:
            out[k, top:top + side, left:left + side] = 0.5
    return out


@functools.cache
def _geometry_and_colour():
    import tensorflow as tf

    kernel = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16  # a 3x3 Gaussian
    depthwise = tf.constant(np.tile(kernel[:, :, None, None], (1, 1, 3, 1)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                  tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def run(images, transforms, colour, size):
        moved = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.stack([size, size]),
            fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
        brightness, contrast, saturation, blur = (colour[:, k, None, None, None] for k in range(4))
        x = moved * brightness
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * contrast + mean
        grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        x = grey + (x - grey) * saturation
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        smooth = tf.nn.depthwise_conv2d(padded, depthwise, [1, 1, 1, 1], "VALID")
        x = x + blur * (x - smooth)  # blur < 0 moves towards the smooth image, > 0 away from it
        return tf.clip_by_value(x, 0.0, 1.0)

    return run
