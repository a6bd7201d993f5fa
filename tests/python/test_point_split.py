"""The points' honest split: groups by content, by `--group_by` and by near-duplicate features, kept whole,
and the split stable.

Every photo is a real one from ../shared, copied (or recompressed, resized) into tmp_path; the
features are MobileNet v1's. The classes' split is checked unchanged by test_dataset.py,
test_honest_split.py and test_workflow.py.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from conftest import MOBILENET_V1, SHARED, SIGN_DIGITS
from PIL import Image

from tensorguess.checks.point_groups import POINT_THRESHOLD, point_groups
from tensorguess.data.grouped_split import Components, band, split_key
from tensorguess.data.keypoints import read_keypoints
from tensorguess.data.photo_groups import compile_group_by
from tensorguess.data.point_split import split_points
from tensorguess.errors import UsageError

MOUSE = SHARED / "datasets" / "keypoints" / "openfield-mouse"


def hand_photos(count: int) -> list[Path]:
    """`count` hand photos, taken from the digit folders in turn: unrelated hands, mostly of other signers."""
    folders = [sorted((SIGN_DIGITS / str(digit)).iterdir()) for digit in range(10)]
    return [folders[at % 10][at // 10] for at in range(count)]


def labelled_set(root: Path, photos: dict[str, Path]) -> Path:
    """Copy `photos` (relative name -> real photo) under `root` and label one point, the centre, on
    each, in a COCO file beside them; returns the file."""
    images = []
    for relative, photo in photos.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if photo != target:
            shutil.copy(photo, target)
        with Image.open(target) as image:
            images.append((relative, *image.size))
    document = {
        "images": [{"id": at + 1, "file_name": name, "width": width, "height": height}
                   for at, (name, width, height) in enumerate(images)],
        "annotations": [{"id": at + 1, "image_id": at + 1, "category_id": 1,
                         "keypoints": [width / 2, height / 2, 2]}
                        for at, (_, width, height) in enumerate(images)],
        "categories": [{"id": 1, "name": "thing", "keypoints": ["centre"]}],
    }
    (root / "points.json").write_text(json.dumps(document))
    return root / "points.json"


def read(path: Path):
    return read_keypoints(path, warn=pytest.fail, say=lambda line: None)


def split_of(result) -> dict[str, str]:
    """Relative path -> its split."""
    return {instance.relative: name for name in result.parts for instance in result.instances(name)}


def name_in_another_band(relative: str, testing: float, validation: float, stem: str) -> str:
    """A file name `stem-N.jpg` whose own key falls in another split than `relative`'s."""
    home = band(split_key(relative), testing, validation)
    return next(name for name in (f"{stem}-{n}.jpg" for n in range(1000))
                if band(split_key(name), testing, validation) != home)


def test_a_photo_copied_under_another_name_lands_in_its_split(tmp_path):
    photos = {f"hands/{path.parent.name}-{path.name}": path for path in hand_photos(30)}
    first = sorted(photos)[0]  # the group's key is its first member's
    copy = name_in_another_band(first, 30, 30, "zz-copy")
    photos[copy] = photos[first]
    points = read(labelled_set(tmp_path, photos))
    groups = point_groups(points, None)
    assert [sorted(p.name for p in group) for group in groups.same_content] == \
        [sorted([Path(first).name, copy])]
    assert any("stored under several names" in line for line in groups.lines)
    together = split_points(points, groups.groups, 30, 30)
    apart = split_points(points, [], 30, 30)
    assert split_of(apart)[copy] != split_of(apart)[first]  # so the group is what keeps them together
    assert split_of(together)[copy] == split_of(together)[first]


def mouse_videos(root: Path) -> Path:
    """DeepLabCut's layout: two videos of 12 frames each, and one frame outside labeled-data."""
    frames = sorted(MOUSE.glob("img*.png"))
    photos = {f"labeled-data/{video}/{frame.name}": frame
              for video, part in (("m4s1", frames[:12]), ("m4s2", frames[12:24])) for frame in part}
    photos["extra/" + frames[30].name] = frames[30]
    return labelled_set(root, photos)


def test_group_by_keeps_each_video_in_one_split_and_counts_the_paths_it_does_not_match(tmp_path):
    points = read(mouse_videos(tmp_path))
    groups = point_groups(points, None, group_by=r"labeled-data/([^/]+)/")
    assert sorted(len(group) for group in groups.by_pattern) == [12, 12]
    assert any("24 photos in 2 group(s)" in line for line in groups.lines)
    (unmatched,) = [line for line in groups.lines if "does not match" in line]
    assert "1 of the 25 photos (e.g. extra/" in unmatched and "\n" not in unmatched
    by_frame = split_of(split_points(points, [], 40, 40))
    assert len({by_frame[r] for r in by_frame if "/m4s1/" in r}) > 1  # apart without the groups
    by_video = split_of(split_points(points, groups.groups, 40, 40))
    for video in ("m4s1", "m4s2"):
        assert len({by_video[r] for r in by_video if f"/{video}/" in r}) == 1


@pytest.mark.parametrize("pattern", ["labeled-data/([^/]+", "*.png", "(?P<v"])
def test_a_group_by_that_does_not_compile_is_one_line_naming_the_flag(tmp_path, pattern):
    points = read(mouse_videos(tmp_path))
    for attempt in (lambda: compile_group_by(pattern), lambda: point_groups(points, None, group_by=pattern)):
        with pytest.raises(UsageError) as refused:
            attempt()
        message = str(refused.value)
        assert message.startswith("--group_by ") and "\n" not in message and repr(pattern) in message


def test_a_group_too_big_for_its_split_stays_in_training_with_a_note(tmp_path):
    frames = sorted(MOUSE.glob("img*.png"))[:20]
    video = next(name for name in (f"v{n}" for n in range(1000))  # its first frame's key: validation
                 if band(split_key(f"labeled-data/{name}/{frames[0].name}"), 10, 10) == "validation")
    photos = {f"labeled-data/{video}/{frame.name}" if at < 12 else f"single/{frame.name}": frame
              for at, frame in enumerate(frames)}
    points = read(labelled_set(tmp_path, photos))
    groups = point_groups(points, None, group_by=r"labeled-data/([^/]+)/")
    result = split_points(points, groups.groups, 10, 10)
    assert {split_of(result)[r] for r in photos if f"/{video}/" in r} == {"training"}
    (note,) = [note for note in result.notes if "kept in training" in note]
    assert note.startswith(f"a group of 12 photos kept together (labeled-data/{video}/")


def test_the_split_is_stable_and_every_split_gets_photos(tmp_path):
    photos = {f"hands/{path.parent.name}/{path.name}": path for path in hand_photos(40)}
    first = split_points(read(labelled_set(tmp_path / "a", photos)), [], 10, 10)
    again = split_points(read(tmp_path / "a" / "points.json"), [], 10, 10)
    shutil.move(tmp_path / "a", tmp_path / "moved")
    moved = split_points(read(tmp_path / "moved" / "points.json"), [], 10, 10)
    assert split_of(first) == split_of(again) == split_of(moved)
    assert all(size > 0 for size in first.sizes().values()) and sum(first.sizes().values()) == 40
    # Three photos are enough for every split, whatever their keys say.
    few = {name: photos[name] for name in sorted(photos)[:3]}
    tiny = split_points(read(labelled_set(tmp_path / "tiny", few)), [], 10, 10)
    assert tiny.sizes() == {"training": 1, "validation": 1, "testing": 1}, tiny.notes


def recompressed(photo: Path, target: Path, scale: int = 1) -> Path:
    """The photo resized by `scale` and saved again as JPEG quality 75: a near-copy."""
    with Image.open(photo) as image:
        image = image.convert("RGB")
        image = image.resize((image.width * scale, image.height * scale), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    target.write_bytes(buffer.getvalue())
    return target


@pytest.fixture(scope="module")
def hands_with_copies(tmp_path_factory):
    """60 unrelated hands and two near-copies (one recompressed, one doubled and recompressed),
    their features and point set: (points, extraction, copy -> its photo's relative path)."""
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache, extract

    root = tmp_path_factory.mktemp("hands")
    photos = {f"{path.parent.name}/{path.name}": path for path in hand_photos(60)}
    originals = sorted(photos)[7], sorted(photos)[33]
    (root / "copies").mkdir()
    copies = {"copies/recompressed.jpg": originals[0], "copies/doubled.jpg": originals[1]}
    for (name, original), scale in zip(copies.items(), (1, 2), strict=True):
        photos[name] = recompressed(photos[original], root / name, scale)
    points = read(labelled_set(root, photos))
    spec, loaded = modules.resolve(str(MOBILENET_V1))
    cache = BottleneckCache(root / "bottlenecks", spec)
    extraction = extract([instance.path for instance in points.instances], spec, loaded, cache)
    return points, extraction, copies, cache.dir


def test_near_duplicates_join_a_photo_and_its_copies_without_chaining_the_hands(hands_with_copies):
    points, extraction, copies, cache_dir = hands_with_copies
    lines: list[str] = []
    groups = point_groups(points, extraction, cache_dir=cache_dir, warn=lines.append)
    assert groups.threshold == POINT_THRESHOLD and not lines
    group_of = {path.relative_to(points.image_root.absolute()).as_posix(): k
                for k, group in enumerate(groups.near_duplicates) for path in group}
    for copy, original in copies.items():
        assert copy in group_of and group_of[copy] == group_of[original], (copy, groups.near_duplicates)
    assert max(len(group) for group in groups.near_duplicates) <= 4  # pairs, at most a triple or so
    assert any(line.startswith("Data check: ") and "complete linkage" in line for line in groups.lines)
    result = split_points(points, groups.groups, 10, 10)
    for copy, original in copies.items():
        assert split_of(result)[copy] == split_of(result)[original]


def test_at_a_low_threshold_single_linkage_chains_the_hands_and_the_rule_does_not(hands_with_copies):
    from tensorguess.features.near_duplicates import find_pairs

    points, extraction, _, _ = hands_with_copies
    paths = sorted((instance.path for instance in points.instances), key=Path.as_posix)
    digests = [extraction.digests[path] for path in paths]
    chain = Components(len(paths))
    for i, j, _ in find_pairs(digests, extraction.matrix(paths), 0.90):
        chain.join((i, j))
    chained = max(map(len, chain.members()))
    assert chained > len(paths) // 3  # the classes' way joins a third of these unrelated hands and more
    groups = point_groups(points, extraction, threshold=0.90)
    largest = max(len(group) for group in groups.near_duplicates)
    assert largest <= len(paths) // 10 and 3 * largest < chained, (largest, chained)

