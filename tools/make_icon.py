"""The Marketplace icon, media/icon.png (128 x 128): media/ficoco.svg's patch grid and bolt, in colour.

Drawn at 8x and scaled down for smooth edges. Run with Debian's python3-pil: /usr/bin/python3 tools/make_icon.py
"""
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 128
SCALE = 8
# ficoco.svg's 24-unit view box
UNIT = SIZE * SCALE / 24
BOLT = [(13.5, 5.5), (9, 12.5), (13, 12.5), (10.5, 18.5), (16, 10.5), (12, 10.5), (14, 5.5)]


def at(units: float) -> int:
    """A length in the view box's units, in pixels of the 8x drawing."""
    return round(units * UNIT)


def main() -> None:
    big = SIZE * SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((at(1), at(1), at(23), at(23)), radius=at(3.5), fill=(31, 78, 140, 255))
    line = round(0.9 * UNIT)
    for cut in (8.33, 15.67):
        draw.line((at(1), at(cut), at(23), at(cut)), fill=(255, 255, 255, 90), width=line)
        draw.line((at(cut), at(1), at(cut), at(23)), fill=(255, 255, 255, 90), width=line)
    # The bolt a third larger than in the 24-pixel view-bar icon, around its centre, to read at 32 pixels.
    bolt = [(12.5 + 1.35 * (x - 12.5), 12 + 1.35 * (y - 12)) for x, y in BOLT]
    draw.polygon([(at(x), at(y)) for x, y in bolt], fill=(255, 204, 51, 255))
    out = Path(__file__).resolve().parent.parent / "media" / "icon.png"
    image.resize((SIZE, SIZE), Image.LANCZOS).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
