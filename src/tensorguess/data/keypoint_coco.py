"""COCO keypoints JSON (CVAT, Label Studio, Roboflow, mmpose exports) read into labelled rows.

The file's category with `keypoints` gives the point names and its `skeleton` the bones
(1-based, as COCO writes them; a skeleton holding a 0 and never K is read as 0-based, and said).
Flip pairs come from a `flip_pairs` (pairs of names or of 0-based indices) or a `flip_index` /
`flip_idx` (each point's mirror, 0-based) in that category when there is one. v = 0 marks a
point not labelled: its coordinates are dropped (some tools write garbage there); v = 1
(labelled, hidden) and v = 2 are both labelled. An image no annotation names is a photo with
no labelled points.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tensorguess.data.capped_lines import CappedLines
from tensorguess.data.keypoint_rows import CORNER, KeypointsError, LabelledRow, ParsedFile, unlabelled
from tensorguess.data.point_names import duplicated

Size = tuple[int, int]


def read_coco(path: Path, text: str, lines: CappedLines) -> ParsedFile:
    """The rows of a COCO keypoints file's text; KeypointsError when the file as a whole is unusable."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise KeypointsError(f"{path} is not valid JSON ({error}); export it again as COCO keypoints") \
            from error
    if not isinstance(document, dict):
        raise KeypointsError(f"{path} holds a JSON {type(document).__name__}, not COCO's object with "
                             "images, annotations and categories")
    images, annotations, categories = (_list(document, key, path)
                                       for key in ("images", "annotations", "categories"))
    category = _keypoint_category(categories, path)
    names = _names(category, path)
    category_id = category.get("id")
    photos = _photos(images, path, lines)
    rows: list[LabelledRow] = []
    annotated: set[object] = set()
    ignored = 0
    for number, annotation in enumerate(annotations, start=1):
        if not isinstance(annotation, dict):
            raise KeypointsError(f"{path}: annotations[{number - 1}] is a {type(annotation).__name__}, "
                                 "not an object; export the file again")
        if "keypoints" not in annotation or annotation.get("category_id", category_id) != category_id:
            ignored += 1  # a box of another category, or a crowd region: no points to read
            continue
        where = f"annotation {_text(annotation.get('id', f'#{number}'))}"
        image_id = annotation.get("image_id")
        if not _usable_id(image_id) or image_id not in photos:
            lines.add("no image", f"{where}: image_id {_text(image_id)} is in no entry of images; skipped",
                      "annotations naming no image")
            continue
        annotated.add(image_id)
        file_name, size = photos[image_id]
        where = f"{where} (image {_text(image_id)}, {_text(file_name)})"
        read = _points(annotation["keypoints"], len(names))
        if isinstance(read, str):
            lines.add("bad keypoints", f"{where}: {read}; skipped", "annotations with unreadable keypoints")
            continue
        rows.append(LabelledRow(where, file_name, *read, size, _bbox(annotation.get("bbox"), where, lines)))
    for image_id, (file_name, size) in photos.items():
        if image_id not in annotated:
            rows.append(LabelledRow(f"image {_text(image_id)} ({_text(file_name)})", file_name,
                                    *unlabelled(len(names)), size))
    if ignored:
        lines.add("ignored", f"{ignored:,} annotation(s) without keypoints of category "
                  f"{_text(category.get('name', category.get('id')))} ignored", "")
    return ParsedFile("coco", names, rows, CORNER, _skeleton(category.get("skeleton"), names, path, lines),
                      _flip_pairs(category, names, path))


def _list(document: dict, key: str, path: Path) -> list:
    value = document.get(key)
    if not isinstance(value, list):
        raise KeypointsError(f"{path} has no {key!r} list, which COCO keypoints files hold; export the "
                             "labels as COCO keypoints (images, annotations, categories)")
    return value


def _keypoint_category(categories: list, path: Path) -> dict:
    with_points = [c for c in categories if isinstance(c, dict) and isinstance(c.get("keypoints"), list)
                   and c["keypoints"]]
    if not with_points:
        raise KeypointsError(f"{path}: no category names keypoints (categories[].keypoints); export COCO "
                             "keypoints, not COCO boxes")
    if len(with_points) > 1:
        named = ", ".join(_text(c.get("name", c.get("id"))) for c in with_points)
        raise KeypointsError(f"{path}: {len(with_points)} categories have keypoints ({named}); one kind "
                             "of object is learned at a time: export one category")
    return with_points[0]


def _names(category: dict, path: Path) -> list[str]:
    names = category["keypoints"]
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise KeypointsError(f"{path}: categories' keypoints must be non-empty names (text); fix the file")
    twice = duplicated(names)
    if twice:
        raise KeypointsError(f"{path}: point name(s) {', '.join(map(repr, twice))} listed twice in the "
                             "category's keypoints; each point needs a name of its own: rename one")
    return list(names)


def _photos(images: list, path: Path, lines: CappedLines) -> dict[object, tuple[str, Size | None]]:
    """image id -> (file_name, (width, height) or None); an entry lacking id or file_name is said, dropped."""
    photos: dict[object, tuple[str, Size | None]] = {}
    for number, image in enumerate(images):
        if not isinstance(image, dict) or not _usable_id(image.get("id")) \
                or not isinstance(image.get("file_name"), str) or not image["file_name"].strip():
            lines.add("bad image", f"images[{number}] has no id or no file_name; left out",
                      "images entries left out")
            continue
        if image["id"] in photos:
            raise KeypointsError(f"{path}: image id {_text(image['id'])} names two images "
                                 f"({photos[image['id']][0]}, {image['file_name']}); ids must be unique")
        size = None
        if "width" in image or "height" in image:
            size = _size(image.get("width"), image.get("height"))
            if size is None:
                lines.add("bad size", f"image {_text(image['id'])} ({image['file_name']}): width and height "
                          "are not whole numbers above 0; the photo's own size is used", "images of bad size")
        photos[image["id"]] = (image["file_name"], size)
    return photos


def _points(values, count: int) -> tuple[np.ndarray, np.ndarray] | str:
    """(points [K, 2], labelled [K]) from COCO's flat x, y, v triples; or why they cannot be read."""
    if not isinstance(values, list) or len(values) != 3 * count:
        held = f"{len(values)} numbers" if isinstance(values, list) else f"a {type(values).__name__}"
        return f"keypoints hold {held}, not 3 x {count} = {3 * count} (x, y, v for each point)"
    if not all(_finite(value) for value in values):
        return "keypoints hold a value that is not a finite number"
    triples = np.asarray(values, dtype=np.float64).reshape(count, 3)
    if not np.isin(triples[:, 2], (0, 1, 2)).all():
        return f"visibility {triples[~np.isin(triples[:, 2], (0, 1, 2)), 2][0]:g} is not 0, 1 or 2"
    labelled = triples[:, 2] > 0
    points = np.where(labelled[:, None], triples[:, :2], np.nan)
    return points, labelled


def _bbox(value, where: str, lines: CappedLines) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 4 and all(_finite(v) for v in value) \
            and value[2] > 0 and value[3] > 0:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    lines.add("bad bbox", f"{where}: bbox {_text(value)} is not [x, y, width, height] with a width and "
              "height above 0; the box is ignored", "boxes ignored")
    return None


def _skeleton(value, names: list[str], path: Path, lines: CappedLines) -> list[tuple[int, int]] | None:
    """COCO's bones as 0-based pairs; KeypointsError for a skeleton that names no point of the file."""
    if value is None or value == []:
        return None
    count = len(names)
    if not isinstance(value, list) or not all(
            isinstance(bone, list) and len(bone) == 2 and all(_whole(end) for end in bone) for bone in value):
        raise KeypointsError(f"{path}: the category's skeleton is not a list of [a, b] point numbers; fix "
                             "or remove it")
    ends = [int(end) for bone in value for end in bone]
    one_based = 0 not in ends
    if not one_based:
        if count in ends:
            raise KeypointsError(f"{path}: the skeleton uses both 0 and {count} with {count} points: it can "
                                 "be neither 1-based (COCO's) nor 0-based; fix it")
        lines.add("0-based skeleton", "the skeleton holds a 0: read as 0-based (COCO's are 1-based)", "")
    shift = 1 if one_based else 0
    bones = [(int(a) - shift, int(b) - shift) for a, b in value]
    wrong = [(a + shift, b + shift) for a, b in bones if not (0 <= a < count and 0 <= b < count) or a == b]
    if wrong:
        raise KeypointsError(f"{path}: skeleton bone {list(wrong[0])} names no two points of the {count} "
                             "(COCO numbers them from 1); fix or remove it")
    return bones


def _flip_pairs(category: dict, names: list[str], path: Path) -> list[tuple[int, int]] | None:
    """The file's own flip pairs (0-based), or None when it gives none."""
    count = len(names)
    if category.get("flip_pairs") is not None:
        value = category["flip_pairs"]
        index = {name: at for at, name in enumerate(names)}
        pairs = []
        for pair in value if isinstance(value, list) else [value]:
            ends = [index.get(end) if isinstance(end, str) else int(end) if _whole(end) else None
                    for end in (pair if isinstance(pair, list) and len(pair) == 2 else [None])]
            if len(ends) != 2 or any(end is None or not 0 <= end < count for end in ends) \
                    or ends[0] == ends[1]:
                raise KeypointsError(f"{path}: flip_pairs entry {_text(pair)} is not two points of the file "
                                     "(names, or indices from 0); fix or remove it")
            pairs.append((ends[0], ends[1]))
    else:
        mirror = category.get("flip_index", category.get("flip_idx"))
        if mirror is None:
            return None
        if not (isinstance(mirror, list) and len(mirror) == count and all(_whole(m) and 0 <= m < count
                                                                          for m in mirror)
                and all(mirror[int(m)] == at for at, m in enumerate(mirror))):
            raise KeypointsError(f"{path}: flip_index is not each point's mirror ({count} indices from 0, "
                                 "mirroring twice giving the point back); fix or remove it")
        pairs = [(at, int(m)) for at, m in enumerate(mirror) if at < m]
    twice = duplicated([at for pair in pairs for at in pair])
    if twice:
        raise KeypointsError(f"{path}: {', '.join(repr(names[at]) for at in twice)} is in two flip pairs; "
                             "a point swaps with one other at most")
    return pairs


def _size(width, height) -> Size | None:
    if _whole(width) and _whole(height) and width > 0 and height > 0:
        return int(width), int(height)
    return None


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return _finite(value) and float(value).is_integer()


def _usable_id(value) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _text(value) -> str:
    """A value of the file as one short line (a file's strings may hold newlines)."""
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= 80 else text[:77] + "..."
