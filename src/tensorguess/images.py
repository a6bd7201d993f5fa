"""Find image files and decode them to RGB pixels, saying why a file cannot be read.

The format is decided by the file's content, never by its extension, so a PNG
named `.jpg` or a JPEG without an extension is read like any other.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats the exported graph can decode too (tf.io.decode_image); keep the two in step.
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")

# Photos larger than this many pixels are almost surely hostile or broken.
Image.MAX_IMAGE_PIXELS = 200_000_000


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


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to a uint8 HxWx3 RGB array.

    Applies EXIF orientation, takes the first frame of an animation and converts
    grayscale, CMYK, palette and alpha images to RGB (alpha over white).
    Raises UnreadableImage with a reason a person can act on.
    """
    if not data:
        raise UnreadableImage("the file is empty (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise UnreadableImage(
            "not an image tensor-guess can read (expected JPEG, PNG, GIF, BMP or WebP content)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                image.seek(0)
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except UnreadableImage:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, EOFError) as error:
        raise UnreadableImage(f"broken {fmt} data ({_short(error)}); re-export or remove it") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(f"too large to decode safely ({_short(error)})") from error


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit grayscale: keep the top byte rather than clipping everything to white.
        array = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(array.astype(np.uint8), mode="L")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # Pillow names the in-memory buffer it read from; that means nothing to a person.
    text = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", text)
    return text[:160]


def read_image(path: Path) -> np.ndarray:
    """Read and decode one image file; UnreadableImage says why it cannot be."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImage(f"cannot read the file ({error.strerror or error})") from error
    return decode_bytes(data)


def content_hash(path: Path) -> str:
    """sha1 of a file's bytes: the identity of an image whatever its name."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
