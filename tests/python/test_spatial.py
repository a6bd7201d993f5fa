"""The spatial map of a real module: tapped by shape at the right node, the real network's values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MOBILENET_V1, MOBILENET_V2, SIGN_DIGITS

from tensorguess.data.images import read_image
from tensorguess.features.modules import ModuleError, resize_image, resolve
from tensorguess.features.spatial import SpatialTrunk, find_tap, imported


@pytest.fixture(scope="module")
def v1():
    return resolve(str(MOBILENET_V1))


def photos(size: int, count: int = 4) -> np.ndarray:
    paths = sorted((SIGN_DIGITS / "3").glob("*.JPG"))[:count]
    return np.stack([resize_image(read_image(path), size).numpy() for path in paths])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_v1_stride_16_is_conv2d_11_pointwise(v1):
    spec, loaded = v1
    trunk = SpatialTrunk(spec, loaded)
    maps = trunk.maps(photos(224, 1))
    assert maps.shape == (1, 14, 14, 512) and trunk.shape == (14, 14, 512)
    assert trunk.tap.node == "Relu6_22"  # Conv2d_11_pw's ReLU6: the last 14x14 layer
    assert maps.min() >= 0 and maps.max() <= 6 and maps.std() > 0.1  # a ReLU6 of real content


@pytest.mark.parametrize("module", [MOBILENET_V1, MOBILENET_V2], ids=["v1", "v2"])
def test_the_averaged_stride_32_map_is_the_modules_vector(module):
    """The tap computes the real network: its last map, averaged, is the module's own output."""
    spec, loaded = resolve(str(module))
    images = photos(224)
    pooled = SpatialTrunk(spec, loaded, stride=32).maps(images).mean(axis=(1, 2))
    assert cosines(pooled, loaded(images).numpy()).min() > 0.99


def test_v2_and_a_smaller_input_size():
    spec, loaded = resolve(str(MOBILENET_V2))
    trunk = SpatialTrunk(spec, loaded, size=160)
    assert trunk.maps(photos(160, 2)).shape == (2, 10, 10, 576)  # block 13's expansion, as SSDLite's
    assert trunk.tap.node == "Relu6_26"


def test_the_frozen_graph_holds_the_same_node(v1):
    """export/frozen.py's graph keeps the tapped node (under its call's prefix): an exported points
    graph can prune itself there, and computes the same map."""
    import tensorflow as tf

    from tensorguess.export.frozen import frozen_module

    spec, loaded = v1
    trunk = SpatialTrunk(spec, loaded)
    graph_def, input_name, _ = frozen_module(spec, loaded)
    tap = find_tap(imported(graph_def), input_name, 16)
    assert tap.node.endswith("/" + trunk.tap.node) and (tap.side, tap.channels) == (14, 512)

    def pruned(images):
        return tf.graph_util.import_graph_def(graph_def, input_map={input_name: images},
                                              return_elements=[f"{tap.node}:0"])[0]

    frozen = tf.compat.v1.wrap_function(pruned, [tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    images = photos(224, 2)
    np.testing.assert_allclose(frozen(tf.constant(images)).numpy(), trunk.maps(images), atol=1e-4)


def test_a_stride_the_module_lacks_is_refused(v1):
    spec, loaded = v1
    with pytest.raises(ModuleError, match="no feature map at stride 64"):
        SpatialTrunk(spec, loaded, stride=64)
