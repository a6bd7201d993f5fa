"""The points heads on a spatial map (features/spatial.py): heatmaps read by soft-argmax, or direct
regression, behind one interface, with their masked loss. Plain TF 2 variables, as train.py's head.

Coordinates are (x, y) normalised to the input side: 0 and 1 are the image's edges, a pixel's
centre in an S-pixel input is at (i + 0.5) / S, and a map cell's centre at (j + 0.5) / side.
A point not labelled (`visible` false) adds nothing to any loss, whatever its coordinates.

The heatmap head (the design of docs/points.md): a 3x3 depthwise + 1x1 (to `width`, ReLU)
block at stride 16, a x2 bilinear upsample, a second such block at stride 8, then a 1x1 to one
logit map per point. The second block comes after the upsample, not before it: a 1x1 convolution
commutes with bilinear upsampling, so with only the last 1x1 after it the finer grid would add
no resolution; the 3x3 after it is what can place a peak between the stride-16 cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

HEATMAP, DIRECT = "heatmap", "direct"
KINDS = (HEATMAP, DIRECT)


@dataclass(frozen=True)
class PointsHeadSpec:
    kind: str = HEATMAP
    width: int = 128  # channels of the heatmap head's two blocks
    divergence_weight: float = 0.1  # of the Jensen-Shannon term against the target Gaussian
    sigma_cells: float = 1.0  # that Gaussian's standard deviation, in heatmap cells
    near_cells: float = 1.5  # a point's confidence: its softmax mass within this of the peak cell

    def describe(self) -> str:
        if self.kind == DIRECT:
            return "direct regression (global pool + dense)"
        return (f"heatmaps at stride 8 ({self.width} channels), soft-argmax, L1 + "
                f"{self.divergence_weight:g} x Jensen-Shannon (sigma {self.sigma_cells:g} cell)")


class Prediction(NamedTuple):
    points: object  # [N,K,2] float32, (x, y) normalised to the input side
    confidence: object  # [N,K] in [0,1]; nan for a head with no distribution to read it from
    probabilities: object | None  # [N,H,W,K] the heatmaps' softmax; None for direct regression


def masked_mean(values, visible):
    """Mean of values [N,K] over the labelled points; 0 when none is (the batch teaches nothing)."""
    import tensorflow as tf

    kept = tf.where(visible, values, tf.zeros_like(values))
    return tf.math.divide_no_nan(tf.reduce_sum(kept), tf.reduce_sum(tf.cast(visible, values.dtype)))


def labelled(truth, visible):
    """truth with every unlabelled point moved to the centre: whatever a file holds there (COCO's
    v=0 points lie outside the photo; a reader may give nan) then never reaches a gradient, where a
    nan would survive masking as 0 x nan."""
    import tensorflow as tf

    return tf.where(visible[..., None], truth, tf.fill(tf.shape(truth), 0.5))


def l1_errors(predicted, truth):
    """|dx| + |dy| of each point, [N,K]."""
    import tensorflow as tf

    return tf.reduce_sum(tf.abs(predicted - truth), axis=-1)


def distances(predicted, truth):
    """Euclidean distance of each point, [N,K], in the coordinates' unit."""
    import tensorflow as tf

    return tf.norm(predicted - truth, axis=-1)


def cell_centres(count: int):
    import tensorflow as tf

    return (tf.range(count, dtype=tf.float32) + 0.5) / tf.cast(count, tf.float32)


def soft_argmax(logits):
    """logits [N,H,W,K] -> (points [N,K,2] normalised, probabilities [N,H,W,K] over each map).

    Integral regression: each point is its softmax's expected cell centre, so it moves by less
    than a cell and its gradient reaches every cell.
    """
    import tensorflow as tf

    shape = tf.shape(logits)
    height, width = shape[1], shape[2]
    flat = tf.reshape(logits, [shape[0], height * width, shape[3]])
    probabilities = tf.reshape(tf.nn.softmax(flat, axis=1), shape)
    # Sums of products, not einsum: TFLite has no op for einsum's "nhwk,w->nk" (export.sh converts this).
    x = tf.reduce_sum(probabilities * cell_centres(width)[None, None, :, None], axis=[1, 2])
    y = tf.reduce_sum(probabilities * cell_centres(height)[None, :, None, None], axis=[1, 2])
    return tf.stack([x, y], axis=-1), probabilities


def peak_mass(probabilities, radius_cells: float):
    """Each map's softmax mass within `radius_cells` of its highest cell, [N,K]: near 1 for one
    sharp peak, low for a spread or a second peak, which soft-argmax would average into nowhere."""
    import tensorflow as tf

    shape = tf.shape(probabilities)
    height, width = shape[1], shape[2]
    flat = tf.reshape(probabilities, [shape[0], height * width, shape[3]])
    peak = tf.argmax(flat, axis=1, output_type=tf.int32)  # [N,K]
    peak_y = tf.cast(peak // width, tf.float32)[:, None, None, :]
    peak_x = tf.cast(peak % width, tf.float32)[:, None, None, :]
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None, None]
    columns = tf.cast(tf.range(width), tf.float32)[None, None, :, None]
    near = tf.square(rows - peak_y) + tf.square(columns - peak_x) <= radius_cells ** 2
    return tf.reduce_sum(tf.where(near, probabilities, tf.zeros_like(probabilities)), axis=[1, 2])


def gaussian_targets(points, height, width, sigma_cells: float):
    """A normalised Gaussian map per point [N,H,W,K], centred on points [N,K,2] (normalised)."""
    import tensorflow as tf

    cx = points[:, :, 0] * tf.cast(width, tf.float32) - 0.5  # in cells: cell j's centre is j
    cy = points[:, :, 1] * tf.cast(height, tf.float32) - 0.5
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None, None]
    columns = tf.cast(tf.range(width), tf.float32)[None, None, :, None]
    squared = tf.square(columns - cx[:, None, None, :]) + tf.square(rows - cy[:, None, None, :])
    weights = tf.exp(-squared / (2 * sigma_cells ** 2))
    # A point far outside the map has all its weights underflow: it then targets the uniform map.
    weights = weights + 1e-12
    return weights / tf.reduce_sum(weights, axis=[1, 2], keepdims=True)


def jensen_shannon(p, q):
    """The Jensen-Shannon divergence (nats, 0 to ln 2) between the maps of p and q, [N,K]."""
    import tensorflow as tf

    middle = 0.5 * (p + q)
    tiny = 1e-12

    def kl(a):
        return tf.reduce_sum(a * (tf.math.log(a + tiny) - tf.math.log(middle + tiny)), axis=[1, 2])

    return 0.5 * kl(p) + 0.5 * kl(q)


class HeatmapHead:
    """Two separable blocks around a x2 upsample, K logit maps, soft-argmax."""

    def __init__(self, channels: int, points: int, spec: PointsHeadSpec = PointsHeadSpec(), seed: int = 0):
        import tensorflow as tf

        self.spec, self.points = spec, points
        generator = tf.random.Generator.from_seed(seed)
        width = spec.width

        def he(shape, fan_in):
            return tf.Variable(generator.normal(shape) * (2.0 / fan_in) ** 0.5)

        self.block1 = [he([3, 3, channels, 1], 9), tf.Variable(tf.zeros([channels])),
                       he([1, 1, channels, width], channels), tf.Variable(tf.zeros([width]))]
        self.block2 = [he([3, 3, width, 1], 9), tf.Variable(tf.zeros([width])),
                       he([1, 1, width, width], width), tf.Variable(tf.zeros([width]))]
        # Small logits at first: every map starts near uniform, every point near the centre.
        self.final = [tf.Variable(generator.normal([1, 1, width, points]) * 0.01),
                      tf.Variable(tf.zeros([points]))]
        self.variables = [*self.block1, *self.block2, *self.final]

    @staticmethod
    def separable(x, block):
        import tensorflow as tf

        depthwise, depthwise_bias, pointwise, pointwise_bias = block
        x = tf.nn.depthwise_conv2d(x, depthwise, [1, 1, 1, 1], "SAME") + depthwise_bias
        return tf.nn.relu(tf.nn.conv2d(x, pointwise, 1, "SAME") + pointwise_bias)

    def logits(self, maps):
        import tensorflow as tf

        x = self.separable(maps, self.block1)
        shape = tf.shape(x)
        x = tf.image.resize(x, [2 * shape[1], 2 * shape[2]], method="bilinear")
        x = self.separable(x, self.block2)
        return tf.nn.conv2d(x, self.final[0], 1, "SAME") + self.final[1]

    def predict(self, maps) -> Prediction:
        points, probabilities = soft_argmax(self.logits(maps))
        return Prediction(points, peak_mass(probabilities, self.spec.near_cells), probabilities)

    def loss(self, maps, truth, visible):
        """Masked L1 on the normalised coordinates + the weighted masked Jensen-Shannon term."""
        import tensorflow as tf

        truth = labelled(truth, visible)
        points, probabilities = soft_argmax(self.logits(maps))
        shape = tf.shape(probabilities)
        target = gaussian_targets(truth, shape[1], shape[2], self.spec.sigma_cells)
        divergence = jensen_shannon(probabilities, target)
        return (masked_mean(l1_errors(points, truth), visible)
                + self.spec.divergence_weight * masked_mean(divergence, visible))


class DirectHead:
    """The map averaged to one vector and a dense layer to 2K coordinates (the article's head)."""

    def __init__(self, channels: int, points: int, spec: PointsHeadSpec = PointsHeadSpec(DIRECT),
                 seed: int = 0):
        import tensorflow as tf

        self.spec, self.points = spec, points
        generator = tf.random.Generator.from_seed(seed)
        limit = (6.0 / (channels + 2 * points)) ** 0.5  # Glorot's uniform
        self.weights = tf.Variable(generator.uniform([channels, 2 * points], -limit, limit))
        self.biases = tf.Variable(tf.fill([2 * points], 0.5))  # every point starts at the centre
        self.variables = [self.weights, self.biases]

    def coordinates(self, maps):
        import tensorflow as tf

        pooled = tf.reduce_mean(maps, axis=[1, 2])
        return tf.reshape(tf.matmul(pooled, self.weights) + self.biases, [-1, self.points, 2])

    def predict(self, maps) -> Prediction:
        import tensorflow as tf

        points = self.coordinates(maps)
        return Prediction(points, tf.fill(tf.shape(points)[:2], float("nan")), None)

    def loss(self, maps, truth, visible):
        return masked_mean(l1_errors(self.coordinates(maps), labelled(truth, visible)), visible)


def make_head(spec: PointsHeadSpec, channels: int, points: int, seed: int = 0):
    """The head `spec.kind` names, for maps of `channels` and `points` points."""
    if spec.kind == HEATMAP:
        return HeatmapHead(channels, points, spec, seed)
    if spec.kind == DIRECT:
        return DirectHead(channels, points, spec, seed)
    raise ValueError(f"points head kind {spec.kind!r} is not one of {', '.join(KINDS)}")
