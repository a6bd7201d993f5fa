"""Open a points model (its frozen graph, or its SavedModel, and the skeleton beside them) and score
photo files: each photo's box and named points in its own pixels (guess's words for them:
points_guess.py).

Photos are read as every other scorer reads them (data/images: EXIF-upright, alpha over white, an
unreadable file a Skipped) but at full size, since the crop reads the photo's own pixels, and
fed to the graph's `photos` (model_dir.PHOTOS) in runs of photos of one size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess import publish
from tensorguess.data.images import Skipped, UnreadableImage, open_regular, read_image
from tensorguess.errors import UsageError
from tensorguess.features.pipeline import bounded_map, default_workers, progress, set_up_decoding
from tensorguess.model_dir import (
    BOX_TENSOR,
    CONFIDENCE_TENSOR,
    FINAL_TENSOR,
    GRAPH,
    LABELS,
    PHOTOS,
    POINT_NAMES,
    POINT_NAMES_TENSOR,
    POINTS_SKELETON,
    POINTS_TENSOR,
    SAVED_MODEL,
    TRAIN_LOG,
    TrainLog,
)
from tensorguess.score import graph_check
from tensorguess.score.predict import ClassifierError

# What --model opens for a points model.
POINTS_FORMATS = ("pb", "saved_model", "tflite", "tflite-int8")
# At most this many pixels in one run of the graph (its float copy is 4 bytes a channel): a run
# of large photos is cut short, and a photo larger than this runs alone.
RUN_PIXELS = 1 << 24
OUTPUTS = (POINTS_TENSOR, CONFIDENCE_TENSOR, BOX_TENSOR)


@dataclass(frozen=True)
class PointsResult:
    path: Path
    points: np.ndarray  # [K,2] (x, y) in the photo's pixels, from its top-left corner
    confidence: np.ndarray  # [K] in [0,1]; nan where the model gives none (direct regression)
    box: np.ndarray  # [4] x0, y0, x1, y1: the square the points were read in
    size: tuple[int, int] = (0, 0)  # the photo's width and height, upright by its EXIF orientation


# A run of the graph: uint8 photos [N,H,W,3] of one size -> (points, confidence, box) as numpy.
Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def read_bytes(path: Path) -> bytes:
    try:
        with open_regular(path, max_bytes=None) as handle:
            return handle.read()
    except OSError as error:
        raise ClassifierError(f"cannot read {path} ({error.strerror or error}); train first with "
                              "train.sh") from error


def read_names(path: Path) -> list[str]:
    """The point names train wrote beside the graph (model_dir.POINT_NAMES), one a line."""
    try:
        names = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ClassifierError(f"{path} cannot be read ({error.__class__.__name__}): train again with "
                              "train.sh") from error
    if not names:
        raise ClassifierError(f"{path} names no point: train again with train.sh")
    return names


def point_names(graph_def, path: Path) -> list[str]:
    """The names the graph holds as its constant `point_names`; a ClassifierError if it has none."""
    import tensorflow as tf

    node = next((node for node in graph_def.node if node.name == POINT_NAMES_TENSOR), None)
    if node is None or node.op != "Const" or node.attr["dtype"].type != tf.string.as_datatype_enum:
        raise ClassifierError(f"{path} is not a points model's graph (it has no constant "
                              f"{POINT_NAMES_TENSOR}); train again with train.sh")
    names = [name.decode("utf-8", "replace") for name in tf.make_ndarray(node.attr["value"].tensor).ravel()]
    if not names:
        raise ClassifierError(f"{path} names no points; train again with train.sh")
    return names


def checked(graph_def, path: Path, trusted: bool) -> None:
    refused = graph_check.refusal(graph_def, path, trusted=trusted)
    if refused:
        raise ClassifierError(refused)


def graph_run(graph_def, path: Path) -> tuple[Run, Callable[[], None]]:
    """The frozen graph in a session: (run, close)."""
    import tensorflow as tf

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        fetches = [graph.get_tensor_by_name(f"{name}:0") for name in OUTPUTS]
        photos = graph.get_tensor_by_name(f"{PHOTOS}:0")
    except (ValueError, KeyError, tf.errors.OpError) as error:
        raise ClassifierError(f"{path} cannot be loaded as a points graph "
                              f"({str(error).strip().splitlines()[0][:200]}); train again with train.sh"
                              ) from error
    session = tf.compat.v1.Session(graph=graph)

    def run(pixels):
        return tuple(session.run(fetches, {photos: pixels}))

    box = crop_box_tensor(graph)
    if box is not None:
        # The box fed: the session runs only what the outputs need beyond it (the points stage in
        # that crop), not the locate stage: the camera's tracking (serve, POST /predict/frame?box=).
        run.in_boxes = lambda pixels, boxes: tuple(session.run(fetches, {photos: pixels, box: boxes}))
    return run, session.close


def crop_box_tensor(graph):
    """A two-stage graph's crop box [N,4] (x0, y0, x1, y1 in photo pixels), which the points stage
    reads its crop in: the input of the `box` output, when the points depend on it; else None (a
    graph of one stage reads the whole photo: no box to give it)."""
    box = graph.get_tensor_by_name(f"{BOX_TENSOR}:0").op.inputs[0]
    seen, waiting = set(), [graph.get_tensor_by_name(f"{POINTS_TENSOR}:0").op]
    while waiting:
        op = waiting.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if box.op.name == op.name:
            return box
        waiting.extend(tensor.op for tensor in op.inputs)
    return None


def saved_model_run(directory: Path, trusted: bool) -> tuple[Run, list[str], str]:
    """The SavedModel's `photos` signature: (run, names, digest of saved_model.pb)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    graph_file = Path(directory) / "saved_model.pb"
    data = read_bytes(graph_file)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(data)
    except Exception as error:
        raise ClassifierError(f"{graph_file} is not a SavedModel ({error})") from error
    if not saved.meta_graphs:
        raise ClassifierError(f"{graph_file} holds no graph; train again with train.sh")
    for meta_graph in saved.meta_graphs:  # a SavedModel is a program too: checked as the .pb is
        checked(meta_graph.graph_def, graph_file, trusted)
    names = point_names(saved.meta_graphs[0].graph_def, graph_file)
    try:
        signature = tf.saved_model.load(str(directory)).signatures["photos"]
    except (KeyError, ValueError, OSError, tf.errors.OpError) as error:
        raise ClassifierError(f"{directory} has no usable `photos` signature ({error}); train again "
                              "with train.sh") from error

    def run(pixels: np.ndarray):
        out = signature(photos=tf.constant(pixels, tf.uint8))
        return tuple(out[key].numpy() for key in ("points", "confidence", "box"))

    return run, names, hashlib.sha1(data).hexdigest()


@dataclass(frozen=True)
class Skeleton:
    """The bones of the model's POINTS_SKELETON (0-based pairs of points), or why it cannot be read:
    only drawing needs them, so a missing file stops a drawing, never the scoring."""

    bones: tuple[tuple[int, int], ...] = ()
    problem: str | None = None

    def checked(self) -> tuple[tuple[int, int], ...]:
        if self.problem is not None:
            raise ClassifierError(self.problem)
        return self.bones


def read_skeleton(path: Path, names: list[str]) -> Skeleton:
    """The skeleton written beside the graph, checked against the graph's own point names."""
    again = "; train again with train.sh to write it"
    try:
        document = json.loads(read_bytes(path))
        bones = tuple((int(a), int(b)) for a, b in document["skeleton"])
        named = list(document["names"])
    except ClassifierError as error:  # its message names the file and says to train
        return Skeleton(problem=str(error))
    except (ValueError, KeyError, TypeError) as error:
        return Skeleton(problem=f"{path} is not a skeleton tensor-guess wrote ({error!s:.80}){again}")
    if named != names:
        return Skeleton(problem=f"{path} names other points than the graph does{again}")
    if any(not (0 <= k < len(names)) for bone in bones for k in bone):
        return Skeleton(problem=f"{path} joins a point the model does not have{again}")
    return Skeleton(bones)


class PointsScorer:
    """A points model's graph run on photo files: `names`, `skeleton` (its bones, for drawing),
    `digest` (the sha1 of the file run), `score_files` and `close`."""

    def __init__(self, run: Run, names: list[str], digest: str, close: Callable[[], None] = lambda: None,
                 skeleton: Skeleton | None = None):
        self.run, self.names, self.digest, self._close = run, names, digest, close
        # (pixels, boxes [N,4]) -> the outputs, the points read in those boxes: a two-stage .pb's
        # (graph_run); None where the locate stage cannot be skipped (one stage, a SavedModel).
        self.run_in_boxes = getattr(run, "in_boxes", None)
        # The locate stage's crop rule (points_model.crop_box's margin and min_side, from the log):
        # the box the next camera frame's points are read in, from this frame's points.
        self.crop_rule: tuple[float, float] | None = None
        self.skeleton = skeleton or Skeleton(problem="this points model was opened without its skeleton")

    def close(self) -> None:
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def score_files(self, paths: list[Path], batch_size: int = 32, show_progress: bool = False
                    ) -> Iterator[PointsResult | Skipped]:
        """Each path's points, in order, or a Skipped for a file that is not a readable photo."""
        workers = default_workers()
        set_up_decoding()
        decoded = bounded_map(decode, paths, workers, window=2 * workers)
        with progress(len(paths), "Locating points", enabled=show_progress) as bar:
            for run in runs(decoded, batch_size):
                chunk = self._scored(run)
                yield from chunk
                bar.update(len(chunk))

    def _scored(self, run: list[tuple[Path, np.ndarray | UnreadableImage]]) -> list[PointsResult | Skipped]:
        readable = [pixels for _, pixels in run if not isinstance(pixels, UnreadableImage)]
        if readable:
            points, confidence, box = self.run(np.stack(readable))
            if points.shape[1:] != (len(self.names), 2):
                raise ClassifierError(f"the graph gives points of shape {points.shape[1:]} for "
                                      f"{len(self.names)} names; train again with train.sh")
        rows = iter(range(len(readable)))
        results: list[PointsResult | Skipped] = []
        for path, pixels in run:
            if isinstance(pixels, UnreadableImage):
                results.append(Skipped(path, str(pixels)))
                continue
            row = next(rows)
            if not (np.isfinite(points[row]).all() and np.isfinite(box[row]).all()):
                results.append(Skipped(path, "the graph gave no usable points (NaN or infinite); the "
                                       "model is broken: train it again"))
                continue
            results.append(PointsResult(path, points[row], confidence[row], box[row],
                                        (int(pixels.shape[1]), int(pixels.shape[0]))))
        return results


def decode(path: Path) -> tuple[Path, np.ndarray | UnreadableImage]:
    """A photo's uint8 pixels [H,W,3], upright by EXIF, at full size; or why it cannot be read."""
    try:
        return path, read_image(path)
    except UnreadableImage as error:
        return path, error


def runs(decoded, batch_size: int) -> Iterator[list[tuple[Path, np.ndarray | UnreadableImage]]]:
    """The decoded paths, in order, cut into runs whose readable photos share one size: at most
    `batch_size` paths and RUN_PIXELS pixels a run (a larger photo runs alone)."""
    run: list = []
    shape, pixels = None, 0
    for path, item in decoded:
        if not isinstance(item, UnreadableImage):
            size = item.shape[0] * item.shape[1]
            if shape is not None and (item.shape != shape or pixels + size > RUN_PIXELS):
                yield run
                run, pixels = [], 0
            shape, pixels = item.shape, pixels + size
        run.append((path, item))
        if len(run) >= batch_size:
            yield run
            run, shape, pixels = [], None, 0
    if run:
        yield run


def open_points_model(folder: Path, model: str = "pb", graph: str = GRAPH, labels: str = LABELS,
                      final_tensor_name: str = FINAL_TENSOR, trust_graph: bool = False,
                      tta: bool = False) -> PointsScorer:
    """The points model of `folder` in the format `model` (kinds' open_model). The names come from
    the graph itself, the skeleton from POINTS_SKELETON beside the graph (read in the same steady
    moment, so it is the graph's); `labels` and `final_tensor_name` are the classes' and unused."""
    if tta:
        raise UsageError("--tta is for classes models; a points model has no test-time augmentation yet")
    if model not in POINTS_FORMATS:
        raise UsageError(f"a points model scores with --model {' or '.join(POINTS_FORMATS)}, not {model}")
    folder = Path(folder)
    with publish.steady(folder) as where:
        if model == "saved_model":
            run, names, digest = saved_model_run(where(folder / SAVED_MODEL), trust_graph)
            return PointsScorer(run, names, digest, skeleton=read_skeleton(where(folder / POINTS_SKELETON),
                                                                           names))
        if model in ("tflite", "tflite-int8"):  # the names and skeleton: the graph's, beside the files
            from tensorguess.score.points_lite import open_lite_run

            names = read_names(where(folder / POINT_NAMES))
            run, digest = open_lite_run(folder, model, where)
            scorer = PointsScorer(run, names, digest, skeleton=read_skeleton(where(folder / POINTS_SKELETON),
                                                                             names))
            scorer.crop_rule = run.crop_rule  # the files' own (POINTS_CROP): the camera tracks with them
            return scorer
        import tensorflow as tf

        path = where(folder / graph)
        data = read_bytes(path)
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(data)
        except Exception as error:
            raise ClassifierError(f"{path} is not a TensorFlow GraphDef ({error})") from error
        checked(graph_def, path, trust_graph)
        names = point_names(graph_def, path)
        skeleton = read_skeleton(where((folder / graph).parent / POINTS_SKELETON), names)
        run, close = graph_run(graph_def, path)
        scorer = PointsScorer(run, names, hashlib.sha1(data).hexdigest(), close, skeleton)
        log = TrainLog.read(where(folder / TRAIN_LOG))
        locate = log.locate if log is not None else {}
        if scorer.run_in_boxes is not None and "margin" in locate and "min_side" in locate:
            scorer.crop_rule = (float(locate["margin"]), float(locate["min_side"]))
        return scorer
