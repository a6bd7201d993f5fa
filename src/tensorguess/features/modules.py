"""Resolve and load a feature extractor: a TF Hub URL or handle, or a local SavedModel.

A module is described by a ModuleSpec: where it lives, the image size it takes,
the value range it expects and an identity that changes whenever its weights do,
so cached bottlenecks of one module are never read back for another.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tensorguess.errors import TensorGuessError
from tensorguess.features import module_check
from tensorguess.features.download import DownloadError, cached_module

DEFAULT_MODULE = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"

# Every TF Hub image module takes RGB in [0, 1]; other SavedModels may not.
VALUE_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}

# (pattern in the handle, input size). First match wins; sizes from the module docs.
KNOWN_INPUT_SIZES: list[tuple[str, int]] = [
    (r"inception_resnet_v2", 299),
    (r"inception_v[34]", 299),
    (r"inception_v[12]", 224),
    (r"mobilenet_v[123]_\d+_(\d+)", -1),  # size is the last number of the name
    (r"mobilenet_v3_(small|large)_\d+_(\d+)", -1),
    (r"efficientnet/b0", 224),
    (r"efficientnet/b1", 240),
    (r"efficientnet/b2", 260),
    (r"efficientnet/b3", 300),
    (r"efficientnet/b4", 380),
    (r"efficientnet/b5", 456),
    (r"efficientnet/b6", 528),
    (r"efficientnet/b7", 600),
    (r"efficientnet_v2_imagenet\w*_b0", 224),
    (r"efficientnet_v2_imagenet\w*_b1", 240),
    (r"efficientnet_v2_imagenet\w*_b2", 260),
    (r"efficientnet_v2_imagenet\w*_b3", 300),
    (r"efficientnet_v2_imagenet\w*_s", 384),
    (r"efficientnet_v2_imagenet\w*_[ml]", 480),
    (r"efficientnet_v2_imagenet\w*_xl", 512),
    (r"nasnet_large|pnasnet_large", 331),
    (r"nasnet_mobile", 224),
    (r"resnet_v[12]_\d+", 224),
    (r"resnet_50", 224),
    (r"bit/", 224),
]


class ModuleError(TensorGuessError):
    """The module cannot be found, downloaded or used; the message says what to do."""


@dataclass(frozen=True)
class ModuleSpec:
    handle: str  # what the user gave: URL, TF Hub handle or local directory
    path: str  # local directory holding the SavedModel
    input_size: int
    value_range: tuple[float, float]
    identity: str  # changes when the weights or the preprocessing change

    @property
    def cache_name(self) -> str:
        """A folder name for this module's cached bottlenecks."""
        slug = re.sub(r"[^a-z0-9]+", "_", self.handle.lower()).strip("_")[-48:]
        return f"{slug}-{self.identity[:12]}"

    def describe(self) -> dict:
        return asdict(self)


def is_local(handle: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*://", handle) and Path(handle).exists()


def module_cache_dir() -> str:
    """Where downloaded modules live: TFHUB_CACHE_DIR, else the user's cache folder."""
    if os.environ.get("TFHUB_CACHE_DIR"):
        return os.environ["TFHUB_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tensor-guess", "tfhub_modules")


def resolve_path(handle: str) -> str:
    """A local directory holding the module's SavedModel, downloading it if needed."""
    if is_local(handle):
        path = Path(handle).resolve()
        if not (path / "saved_model.pb").is_file():
            raise ModuleError(
                f"{handle} is not a SavedModel directory (no saved_model.pb in it); "
                "point --tfhub_module at the folder that holds saved_model.pb"
            )
        return str(path)
    if not re.match(r"^(https?://|[a-z0-9_-]+/)", handle):
        raise ModuleError(
            f"module {handle!r} is neither an existing local folder nor a TF Hub URL"
        )
    try:
        return str(cached_module(handle, module_cache_dir()))
    except DownloadError as error:
        raise ModuleError(
            f"cannot download module {handle} ({error}); check the URL and network, or "
            "download it and pass its local folder with --tfhub_module or TFHUB_MODULE"
        ) from error


def weights_fingerprint(path: str) -> str:
    """sha1 of the files that define a SavedModel's graph and weights."""
    digest = hashlib.sha1()
    root = Path(path)
    for name in ("saved_model.pb", "variables/variables.index"):
        file = root / name
        if file.is_file():
            digest.update(name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def guess_input_size(handle: str) -> int | None:
    name = handle.lower()
    for pattern, size in KNOWN_INPUT_SIZES:
        match = re.search(pattern, name)
        if match:
            return int(match.groups()[-1]) if size == -1 else size
    return None


def check(handle: str, trusted: bool = False) -> None:
    """Refuse a module holding more than tensor computation (unless `trusted`) without loading it.

    Train calls it before it takes DIR, so a refused module leaves DIR as it was.
    """
    refused = module_check.refusal(Path(resolve_path(handle)), trusted)
    if refused:
        raise ModuleError(refused)


def load(path: str, trusted: bool = False):
    """The loaded SavedModel object (tf.Module-like), as hub.load gives it.

    Every module is checked here, before TensorFlow reads it (loading can already run
    its graph): one holding more than tensor computation is refused unless `trusted`.
    """
    import tensorflow as tf

    refused = module_check.refusal(Path(path), trusted)
    if refused:
        raise ModuleError(refused)
    try:
        return tf.saved_model.load(path)
    except Exception as error:
        raise ModuleError(
            f"cannot load the SavedModel in {path} ({str(error).splitlines()[0][:200]})"
        ) from error


def feature_function(loaded) -> Callable:
    """A callable images[N,H,W,3] -> features[N,D], whatever the module's call style."""
    if callable(loaded):
        call = loaded
    elif "serving_default" in getattr(loaded, "signatures", {}):
        signature = loaded.signatures["serving_default"]
        name = next(iter(signature.structured_input_signature[1]))

        def call(images):
            return signature(**{name: images})
    else:
        raise ModuleError("the module has neither a __call__ nor a serving_default signature")

    def features(images):
        output = call(images)
        if isinstance(output, dict):
            output = output.get("feature_vector", output.get("default", next(iter(output.values()))))
        return output

    return features


def signature_input_size(loaded) -> int | None:
    """The square input size a module declares, if it declares one."""
    import tensorflow as tf

    candidates = []
    call = loaded.__call__ if callable(loaded) else None
    for function in getattr(call, "concrete_functions", None) or []:
        args = tf.nest.flatten(function.structured_input_signature)
        candidates.extend(a for a in args if isinstance(a, tf.TensorSpec))
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" in signatures:
        candidates.extend(tf.nest.flatten(signatures["serving_default"].structured_input_signature))
    for spec in candidates:
        shape = getattr(spec, "shape", None)
        if shape is not None and shape.rank == 4 and shape[1] and shape[1] == shape[2]:
            return int(shape[1])
    return None


def resolve(handle: str, input_size: int | None = None, value_range: str | None = None,
            trusted: bool = False):
    """Find, check, load and describe a module. Returns (ModuleSpec, loaded module).

    `trusted` (train's --trust_graph) loads a module whatever operations it holds.
    """
    path = resolve_path(handle)
    loaded = load(path, trusted)
    size = input_size or signature_input_size(loaded) or guess_input_size(handle)
    if not size:
        raise ModuleError(
            f"cannot tell the input size of module {handle}; pass --input_size (e.g. 224)"
        )
    range_name = value_range or "0,1"
    if range_name not in VALUE_RANGES:
        raise ModuleError(
            f"--input_range must be one of {', '.join(VALUE_RANGES)}, not {range_name!r}"
        )
    low, high = VALUE_RANGES[range_name]
    source = handle if not is_local(handle) else weights_fingerprint(path)
    identity = hashlib.sha1(
        json.dumps({"module": source, "size": size, "range": [low, high],
                    "resize": RESIZE_SCHEME}).encode()
    ).hexdigest()
    spec = ModuleSpec(handle, path, int(size), (low, high), identity)
    return spec, loaded


# Part of every module's identity: a change to resize_image must give a fresh bottleneck cache.
RESIZE_SCHEME = "area-to-fit-then-bilinear"


def resize_image(image, size: int):
    """uint8 or float [H,W,3] -> float32 [size,size,3] in [0,1].

    The one resize used everywhere (bottlenecks, prediction, the exported graph),
    so a photo gives the same features whichever path reads it. In two steps:
    `shrink_to_fit` averages boxes of pixels along each side longer than `size`
    (the antialiased way to shrink, and a fifth of the cost of TensorFlow's
    antialiased bilinear filter), then `enlarge` interpolates bilinearly along the
    sides that are still shorter (nothing left to alias there).
    """
    return enlarge(shrink_to_fit(image, size), size)


def shrink_to_fit(image, size: int):
    """Float32 pixels in [0,1], no side longer than `size`: box-averaged where it was."""
    import tensorflow as tf

    pixels = tf.image.convert_image_dtype(image, tf.float32)
    height, width = image.shape[0], image.shape[1]
    if height is not None and width is not None:  # eager, or a known shape: decide here
        if height <= size and width <= size:
            return pixels
        return tf.image.resize(pixels, [min(height, size), min(width, size)], method="area")
    shape = tf.shape(pixels)[:2]
    return tf.cond(tf.reduce_any(shape > size),
                   lambda: tf.image.resize(pixels, tf.minimum(shape, size), method="area"),
                   lambda: pixels)


def enlarge(pixels, size: int):
    """Bilinear resize of float pixels no larger than size x size to exactly that size.

    Works on one image [H,W,3] or a batch of one shape [N,H,W,3]; a side already
    `size` long is left exactly as it is.
    """
    import tensorflow as tf

    return tf.image.resize(pixels, [size, size], method="bilinear", antialias=False)


def to_value_range(images, value_range: tuple[float, float]):
    """Map images in [0,1] to the range the module expects."""
    low, high = value_range
    if (low, high) == (0.0, 1.0):
        return images
    return images * (high - low) + low
