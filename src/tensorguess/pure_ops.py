"""The operations a graph may run without being trusted: pure tensor computation.

One allowlist for every graph tensor-guess runs: the graphs it writes and reads back
(score/graph_check.py) and the feature-extractor modules it loads
(features/module_check.py). A leaf module, so every stage can import it.
"""

from __future__ import annotations

# What our exported graphs hold (decode, resize, MobileNet/Inception/EfficientNet
# modules frozen, the final layer; the points graph's crop, an image resampled by an affine
# map), what retrain.py's graphs hold (classic Inception's
# BatchNormWithGlobalNormalization, quantized MobileNets' FakeQuant ops), and the
# neighbours of those ops that frozen TF Hub image modules use. None of them touches
# a file, the network, a variable or the Python interpreter.
PURE_OPS = frozenset("""
    Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp StopGradient
    PreventGradient Snapshot CheckNumerics CheckNumericsV2 Assert EnsureShape
    DecodeJpeg DecodeAndCropJpeg DecodePng DecodeGif DecodeBmp DecodeWebP DecodeImage
    DecodeRaw ExtractJpegShape Substr StringLength
    ResizeBilinear ResizeArea ResizeBicubic ResizeNearestNeighbor ScaleAndTranslate
    CropAndResize ImageProjectiveTransformV3 AdjustContrastv2 AdjustHue AdjustSaturation RGBToHSV HSVToRGB
    Add AddV2 AddN Sub Mul MulNoNan Div RealDiv DivNoNan FloorDiv FloorMod TruncateDiv Mod
    Maximum Minimum Neg Abs Sqrt Rsqrt Square SquaredDifference Exp Expm1 Log Log1p Pow
    Tanh Sigmoid Erf Round Rint Floor Ceil Sign Reciprocal Inv Cast Bitcast
    MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum BiasAdd BiasAddV1
    Sum Mean Max Min Prod ArgMax ArgMin All Any Cumsum Cumprod
    Less LessEqual Greater GreaterEqual Equal NotEqual ApproximateEqual
    LogicalAnd LogicalOr LogicalNot Select SelectV2 ClipByValue IsFinite IsNan IsInf
    BitwiseAnd BitwiseOr BitwiseXor Invert LeftShift RightShift
    Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax LogSoftmax
    Conv2D Conv3D DepthwiseConv2dNative MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D
    FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 BatchNormWithGlobalNormalization
    LRN L2Loss _FusedConv2D _FusedMatMul _FusedDepthwiseConv2dNative
    FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel FakeQuantWithMinMaxArgs
    QuantizeV2 Dequantize
    Shape ShapeN Size Rank Reshape Squeeze ExpandDims Transpose ConcatV2 Concat
    Pack Unpack Split SplitV Slice StridedSlice Tile Pad PadV2 MirrorPad
    Gather GatherV2 GatherNd Where BroadcastTo BroadcastArgs ReverseV2 OneHot TopKV2
    Range Fill ZerosLike OnesLike SpaceToBatchND BatchToSpaceND DepthToSpace SpaceToDepth
    If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall
    StatefulPartitionedCall
    Switch Merge Enter Exit NextIteration LoopCond
    TensorListReserve TensorListSetItem TensorListGetItem TensorListStack
    TensorListFromTensor TensorListLength TensorListElementShape
""".split())


def attribute_calls(node) -> set[str]:
    """The functions a node calls through its attributes (`PartitionedCall`'s f, `If`'s branches)."""
    called = set()
    for value in node.attr.values():
        if value.HasField("func"):
            called.add(value.func.name)
        called.update(f.name for f in value.list.func)
    return called


def unknown_ops(ops) -> list[str]:
    """The ops this TensorFlow has never heard of (a newer TF's, or made up)."""
    from tensorflow.python.framework import op_def_registry

    return sorted(op for op in ops if op_def_registry.get(op) is None)
