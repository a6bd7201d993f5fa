"""Draw the demo set in tf_files/data/ and the photos to guess in test_data/.

Two categories a pretrained network tells apart at once, drawn with PIL so the
repository carries no third-party photos: `circles` and `stripes`, each with
random colours, sizes and positions. Deterministic: run it again, get the same files.

    python scripts/make-demo-data.py
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SIZE = (160, 120)


def colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(256) for _ in range(3))  # type: ignore[return-value]


def circles(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", SIZE, colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(3, 9)):
        radius = rng.randrange(8, 40)
        x, y = rng.randrange(SIZE[0]), rng.randrange(SIZE[1])
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour(rng))
    return image.filter(ImageFilter.GaussianBlur(0.8))


def stripes(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (SIZE[0] * 2, SIZE[1] * 2), colour(rng))
    draw = ImageDraw.Draw(image)
    width = rng.randrange(6, 20)
    for x in range(-SIZE[1] * 2, SIZE[0] * 2, width * 2):
        draw.rectangle([x, 0, x + width, SIZE[1] * 2], fill=colour(rng))
    image = image.rotate(rng.uniform(-60, 60), resample=Image.BILINEAR)
    left, top = SIZE[0] // 2, SIZE[1] // 2
    return image.crop((left, top, left + SIZE[0], top + SIZE[1])).filter(ImageFilter.GaussianBlur(0.8))


def main() -> None:
    rng = random.Random(20161121)
    for name, draw in (("circles", circles), ("stripes", stripes)):
        folder = ROOT / "tf_files" / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(1, 21):
            draw(rng).save(folder / f"{name}_{index:02d}.jpg", quality=85)
        (ROOT / "test_data").mkdir(exist_ok=True)
        draw(rng).save(ROOT / "test_data" / f"{name}.jpg", quality=85)
    # The same kind of photo as a PNG, to show formats are read by content.
    circles(rng).save(ROOT / "test_data" / "more_circles.png")


if __name__ == "__main__":
    main()
