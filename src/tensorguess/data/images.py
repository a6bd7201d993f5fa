"""Find image files and decode them to RGB pixels, saying why a file cannot be read.

The format is decided by the file's content, never by its extension, so a PNG
named `.jpg` or a JPEG without an extension is read like any other.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats the exported graph can decode too (tf.io.decode_image); keep the two in step.
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")

# Photos larger than this many pixels are almost surely hostile or broken.
Image.MAX_IMAGE_PIXELS = 200_000_000


# No photo tensor-guess reads is larger: an image at the pixel limit above, stored
# uncompressed at 16-bit RGBA (8 bytes a pixel), is 1.6 GB. A larger file is refused from
# its size before a byte of it is read (a 10 GB sparse file took 40 s to hash, then failed).
MAX_FILE_BYTES = 8 * Image.MAX_IMAGE_PIXELS


class RefusedFile(OSError):
    """A file refused before a byte of it is read: not a regular file, or too large.

    An OSError whose strerror says why, so that every `except OSError` that reports a
    file it cannot open reports this one the same way, in one line.
    """


def open_regular(path, max_bytes: int | None = MAX_FILE_BYTES) -> BinaryIO:
    """`path` opened for reading in binary, only if it is a regular file of at most `max_bytes`.

    Never blocks: a FIFO, a device or a socket is refused from its stat, and the open
    itself is non-blocking (a FIFO swapped in after the stat would otherwise wait for a
    writer forever); the kind and size that count are the open file's own (fstat), so the
    name cannot be swapped between the check and the read. A final symlink is followed:
    a photo may be a link to one elsewhere (list_files follows linked folders too).
    """
    _require_regular(os.stat(path), max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(fd), max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _require_regular(status: os.stat_result, max_bytes: int | None) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise RefusedFile(errno.EINVAL, f"{kind_of(status.st_mode)}, not a regular file; only regular "
                          "files are read")
    if max_bytes is not None and status.st_size > max_bytes:
        raise RefusedFile(errno.EFBIG, f"{status.st_size / 1e9:.1f} GB, larger than any photo: over "
                          f"the limit of {max_bytes / 1e9:.1f} GB")


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, in words (from its st_mode)."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class UnreadableImage(Exception):
    """A file that is not a decodable image; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A file left out of a run, and the reason, for warnings and summaries."""

    path: Path
    reason: str

    def warning(self) -> str:
        return f"tensor-guess: skipping {printable(self.path)}: {self.reason}"


def printable(path) -> str:
    """A path as one line of text: control characters (a newline in a file name) escaped.

    The escapes are Python's (`\\n`, `\\x1b`), so every message stays one line and a
    header such as guess's `==> IMAGE <==` cannot be forged by a file's name.
    """
    text = str(path)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def list_files(folder: Path, warn: Callable[[str], None] | None = None) -> list[Path]:
    """Every non-hidden file below `folder`, in a stable order, symlinked folders followed.

    One rule for train, guessDir and evaluate: a symlinked folder is walked like a real
    one, except one that leads back to a folder already being walked (a loop) or
    already listed through another path, which is left out with a warning, never
    silently. Broken links are listed, so that they are reported as unreadable.
    """
    warn = warn or _warn_stderr
    found: list[Path] = []
    seen: dict[str, Path] = {}  # real folder -> the path it was first walked through
    for root, dirs, files in os.walk(folder, followlinks=True):
        here = os.path.realpath(root)
        if here in seen:
            warn(f"tensor-guess: skipping {printable(root)}: a symlink to {printable(seen[here])}, "
                 "which is listed already (a loop, or the same folder twice)")
            dirs[:] = []
            continue
        seen[here] = Path(root)
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        found.extend(Path(root) / f for f in sorted(files) if not is_hidden(f))
    return found


def _warn_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sniff_format(head: bytes) -> str | None:
    """The image format of a file from its first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


# A JPEG decoded at reduced size (see `_draft`) keeps at least this many times the
# network's input side on every side: below 6, the missing resolution itself changes
# the scores; from 6 on, only the reduction's own colour rounding does (bench/huge_photos.py).
DRAFT_MARGIN = 6

# Called with the number of pixels about to be decoded, before any is: the hook by which a
# memory budget makes a worker wait (pipeline.prepare_for_network passes one).
Hold = Callable[[int], object]


def decode_bytes(data: bytes, target: int | None = None, max_pixels: int | None = None,
                 hold: Hold | None = None) -> np.ndarray:
    """Decode encoded image bytes to a uint8 HxWx3 RGB array.

    Applies EXIF orientation, takes the first frame of an animation and converts
    grayscale, CMYK, palette and alpha images to RGB (alpha over white).
    Raises UnreadableImage with a reason a person can act on.

    Without `max_pixels` the image comes at full size. With it, a JPEG of more pixels
    than that is decoded at 1/2, 1/4 or 1/8 size: the least reduction that brings it
    under `max_pixels`, as far as every side keeps DRAFT_MARGIN x `target` (the
    network's input side) pixels. `hold` is called with the number of pixels about
    to be decoded, once the header is read and before any pixel is.
    """
    return as_array(decode_rgb(data, target, max_pixels, hold))


def decode_rgb(data: bytes, target: int | None = None, max_pixels: int | None = None,
               hold: Hold | None = None) -> Image.Image:
    """decode_bytes's pixels as a loaded RGB Pillow image, for callers that work on it in parts."""
    if not data:
        raise UnreadableImage("the file is empty (0 bytes)")
    return _decode(io.BytesIO(data), sniff_format(data[:16]), target, max_pixels, hold)


def as_array(image: Image.Image) -> np.ndarray:
    """A loaded RGB Pillow image as a uint8 HxWx3 array."""
    return np.asarray(image, dtype=np.uint8)


def _decode(stream: BinaryIO, fmt: str | None, target: int | None, max_pixels: int | None,
            hold: Hold | None) -> Image.Image:
    if fmt is None:
        raise UnreadableImage(
            "not an image tensor-guess can read (expected JPEG, PNG, GIF, BMP or WebP content)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Image.open reads only the header; Pillow refuses a bomb there, by its declared size.
            # No `with`: closing a Pillow image frees its pixels, which are the result here;
            # the stream is the caller's to close.
            image = Image.open(stream, formats=[fmt])
            image.seek(0)
            _refuse_bomb(image)
            if max_pixels and fmt == "JPEG":
                _draft(image, max_pixels, DRAFT_MARGIN * (target or 1))
            if hold is not None:
                hold(image.width * image.height)  # the size load() will decode at
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy when upright
            return _rgb_image(image)
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, EOFError) as error:
        raise UnreadableImage(f"broken {fmt} data ({_short(error)}); re-export or remove it") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"too large to decode safely ({_short(error)})") from error


def _refuse_bomb(image: Image.Image) -> None:
    """Refuse an image declared larger than MAX_IMAGE_PIXELS, before decoding any of it.

    Pillow's own check warns, and the warning is an error only inside the
    catch_warnings above, which is not thread-safe: a worker leaving it restores the
    filters under another still in it. This check holds on every thread.
    """
    pixels = image.width * image.height
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        raise UnreadableImage(
            f"too large to decode safely ({image.width}x{image.height} = {pixels:,} pixels, "
            f"over the limit of {Image.MAX_IMAGE_PIXELS:,})"
        )


def _draft(image: Image.Image, max_pixels: int, keep: int) -> None:
    """Have libjpeg decode a JPEG of over `max_pixels` at 1/2, 1/4 or 1/8 size (Image.draft).

    Its scaled IDCT never builds the full-size pixels: a 12000x12000 photo at 1/2 costs
    6000x6000. The least reduction that brings the photo under `max_pixels` is taken,
    short of any side going under `keep`. Only photos over `max_pixels` are reduced:
    the reduction changes colours a little wherever the full-size ones were clipped
    (saturated colours), which moves scores by up to about 1e-2 (bench/huge_photos.py).
    """
    width, height = image.size
    if width * height <= max_pixels:
        return
    chosen = 1
    for scale in (2, 4, 8):
        reduced = -(-width // scale), -(-height // scale)  # libjpeg rounds up
        if min(reduced) < keep:
            break
        chosen = scale
        if reduced[0] * reduced[1] <= max_pixels:
            break
    if chosen > 1:
        # Pillow scales by the largest of 8, 4, 2 that leaves the size asked for: this one.
        image.draft("RGB", (width // chosen, height // chosen))  # the mode stays the file's


def _rgb_image(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit grayscale: keep the top byte rather than clipping everything to white.
        array = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(array.astype(np.uint8), mode="L")
    # An RGB image is used as it is: convert() would copy it, full size.
    return image if image.mode == "RGB" else image.convert("RGB")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # Pillow names the buffer or file object it read from; that means nothing to a person.
    text = re.sub(r" ?<_io\.\w+ (object at 0x[0-9a-f]+|name=[^>]*)>", "", text)
    return text[:160]


def read_image(path: Path, target: int | None = None, max_pixels: int | None = None,
               hold: Hold | None = None) -> np.ndarray:
    """Read and decode one image file; UnreadableImage says why it cannot be.

    `target`, `max_pixels` and `hold` are decode_bytes's.
    """
    return as_array(read_rgb(path, target, max_pixels, hold))


def read_rgb(path: Path, target: int | None = None, max_pixels: int | None = None,
             hold: Hold | None = None) -> Image.Image:
    """read_image's pixels as a loaded RGB Pillow image.

    The file is read as Pillow decodes it, never held whole in memory.
    """
    try:
        with open_regular(path) as handle:
            head = handle.read(16)
            if not head:
                raise UnreadableImage("the file is empty (0 bytes)")
            handle.seek(0)
            return _decode(handle, sniff_format(head), target, max_pixels, hold)
    except OSError as error:  # decoding errors are UnreadableImage already: this is open or read
        raise UnreadableImage(f"cannot read the file ({error.strerror or error})") from error


# EXIF orientations 5 to 8 turn a photo a quarter turn (with or without a mirror): its sides swap.
SIDE_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
EXIF_ORIENTATION = 0x0112


class PhotoSize(NamedTuple):
    """A photo's size as read_image decodes it (EXIF orientation applied); whether that swapped its sides."""

    width: int
    height: int
    sides_swapped: bool


def upright_size(path: Path) -> PhotoSize:
    """The size read_image gives `path`, from the file's header alone: no pixel is decoded.

    Orientation is read as exif_transpose reads it (EXIF, else XMP's tiff:Orientation), except
    that a PNG's EXIF counts only when it stands before the pixels, where PNG 3 puts it:
    Pillow would decode the whole PNG to look for one after them. UnreadableImage says why not.
    """
    try:
        with open_regular(path) as handle:
            fmt = sniff_format(handle.read(16))
            if fmt is None:
                raise UnreadableImage("not an image tensor-guess can read (expected JPEG, PNG, GIF, BMP or "
                                      "WebP content)")
            handle.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(handle, formats=[fmt]) as image:
                    _refuse_bomb(image)
                    # The base class's getexif reads what the header gave; PNG's own would load() first.
                    orientation = Image.Image.getexif(image).get(EXIF_ORIENTATION, 1)
                    swapped = orientation in SIDE_SWAPPING_ORIENTATIONS
                    width, height = (image.height, image.width) if swapped else image.size
                    return PhotoSize(width, height, swapped)
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"too large to decode safely ({_short(error)})") from error
    except (SyntaxError, ValueError, UnidentifiedImageError, EOFError) as error:
        raise UnreadableImage(f"broken image header ({_short(error)}); re-export or remove it") from error
    except OSError as error:
        raise UnreadableImage(f"cannot read the file ({error.strerror or _short(error)})") from error


def content_hash(path: Path) -> str:
    """sha1 of a file's bytes: the identity of an image whatever its name.

    Only a regular file of at most MAX_FILE_BYTES is read (open_regular): RefusedFile, an
    OSError, for any other.
    """
    digest = hashlib.sha1()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
