"""Drawing points on a photo: the skeleton's bones, the points and a box, for the points report
(labelled and predicted points) and guess --draw (a model's answer), so both draw alike.

Points come in continuous pixel coordinates (pixel (i, j) covers x in [i, i+1), y in [j, j+1)),
as the scorer and the keypoint readers give them; Pillow draws pixel (i, j) at (i, j), so a point
is drawn at (x - 0.5, y - 0.5) after scaling, and the pixel holding the point is its colour.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from tensorguess.report.plots import SOFTWARE

PREDICTED = (230, 40, 40)  # red: a model's points and bones
LABELLED = (40, 200, 60)  # green: the labelled ones (the report)
BOX = (255, 200, 0)  # amber: the square the points were read in


def pen_sizes(side: float) -> tuple[float, int]:
    """(a point's radius, a line's width) for a picture whose longer side is `side` pixels: 2 and
    1 up to 300 px, growing with it so a 3,000 px photo's points stay visible."""
    return max(2.0, side / 150), max(1, round(side / 300))


def _at(point, scale: float) -> tuple[float, float]:
    return float(point[0]) * scale - 0.5, float(point[1]) * scale - 0.5


def draw_points(pen: ImageDraw.ImageDraw, points: np.ndarray, shown: np.ndarray, bones,
                colour: tuple[int, int, int], scale: float = 1.0, radius: float = 2.0,
                width: int = 1) -> None:
    """The bones between shown points, then the shown points on top of them (so a point's own
    pixel is `colour` even where a bone of another colour crosses it)."""
    for a, b in bones:
        if shown[a] and shown[b]:
            pen.line([_at(points[a], scale), _at(points[b], scale)], fill=colour, width=width)
    for k, point in enumerate(points):
        if shown[k]:
            x, y = _at(point, scale)
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, fill=colour)


def draw_box(pen: ImageDraw.ImageDraw, box, colour: tuple[int, int, int], scale: float = 1.0,
             width: int = 1) -> None:
    """The box x0, y0, x1, y1 (continuous coordinates); Pillow clips what lies past the picture."""
    x0, y0 = _at(box[:2], scale)
    x1, y1 = _at(box[2:], scale)
    pen.rectangle([x0, y0, x1, y1], outline=colour, width=width)


def answer_drawn(pixels: np.ndarray, points: np.ndarray, box, bones) -> Image.Image:
    """A model's answer on the photo at its own size (a drawn pixel is where the numbers say): the
    box, then the bones and the points that the model placed (finite)."""
    image = Image.fromarray(pixels).convert("RGB")
    radius, width = pen_sizes(max(image.size))
    pen = ImageDraw.Draw(image)
    draw_box(pen, box, BOX, width=width)
    draw_points(pen, points, np.isfinite(points).all(axis=1), bones, PREDICTED, radius=radius, width=width)
    return image


def png_bytes(image: Image.Image, description: str | None = None) -> bytes:
    """The picture as PNG, its tEXt chunks (before the pixels, so a reader of the file's first
    bytes finds them) saying tensor-guess made it and, given, what it is."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", SOFTWARE)
    if description:
        info.add_text("Description", description)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()
