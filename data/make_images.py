"""Make the demo tweet images in data/sample/images/ (the real tweet images cannot be distributed).

Each image is a simple drawing (shapes plus rendered text naming an entity of its tweet: a sign,
a banner, a scoreboard), so captioning and OCR have something to work on. Deterministic: the same
PIL and font give the same files. Run: ``python data/make_images.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "sample" / "images"
SIZE = (640, 360)
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)

Draw = Callable[[ImageDraw.ImageDraw], None]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Bold at ``size`` when installed, else PIL's built-in font at that size."""
    for path in FONT_FILES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def text_box(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int,
             fill: str = "white", ink: str = "black", pad: int = 14) -> None:
    """``text`` on a filled rectangle (a sign) whose top-left corner is ``xy``."""
    face = font(size)
    left, top, right, bottom = draw.textbbox(xy, text, font=face)
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=fill, outline=ink, width=3)
    draw.text(xy, text, font=face, fill=ink)


def zimmerman(d: ImageDraw.ImageDraw) -> None:
    """A news banner over a street."""
    d.rectangle((0, 250, 640, 360), fill="#555555")
    d.rectangle((0, 300, 640, 306), fill="#eeeeee")
    d.rectangle((60, 90, 200, 250), fill="#b08060")
    text_box(d, (40, 30), "BREAKING NEWS", 34, fill="#c00000", ink="white")
    text_box(d, (240, 150), "George Zimmerman", 36)


def tower_bridge(d: ImageDraw.ImageDraw) -> None:
    """Two towers, a deck, the river and a sign."""
    d.rectangle((0, 260, 640, 360), fill="#3a6ea5")
    for x in (150, 430):
        d.rectangle((x, 90, x + 60, 270), fill="#c9b48a", outline="#6b5a3a", width=3)
        d.polygon([(x - 5, 90), (x + 30, 40), (x + 65, 90)], fill="#4a4a4a")
    d.rectangle((100, 200, 540, 220), fill="#6b5a3a")
    text_box(d, (200, 300), "Tower Bridge", 34)


def melee(d: ImageDraw.ImageDraw) -> None:
    """A tournament scoreboard."""
    d.rectangle((20, 20, 620, 340), fill="#101030", outline="#f0c000", width=6)
    d.text((70, 50), "MELEE GRAND FINALS", font=font(40), fill="#f0c000")
    d.text((90, 160), "Smash Shiba", font=font(38), fill="white")
    d.text((480, 160), "3 - 1", font=font(38), fill="white")


def coble(d: ImageDraw.ImageDraw) -> None:
    """A press-conference podium with a name plate."""
    d.rectangle((0, 0, 640, 360), fill="#1f3a68")
    d.ellipse((270, 40, 370, 140), fill="#e0b090")
    d.rectangle((250, 140, 390, 230), fill="#222222")
    d.polygon([(200, 230), (440, 230), (410, 360), (230, 360)], fill="#8b5a2b")
    text_box(d, (150, 260), "Rep. Howard Coble", 32)


def pope(d: ImageDraw.ImageDraw) -> None:
    """A banner in a square."""
    d.rectangle((0, 0, 640, 220), fill="#9fc8e8")
    d.rectangle((0, 220, 640, 360), fill="#c8c0a8")
    d.ellipse((280, 30, 360, 110), fill="#f2f2f2")
    d.rectangle((270, 110, 370, 220), fill="#f2f2f2")
    text_box(d, (180, 260), "Pope Francis", 40, fill="#fff4c0")


def tokyo(d: ImageDraw.ImageDraw) -> None:
    """Cherry blossoms (pink circles) and a city sign."""
    d.rectangle((0, 0, 640, 360), fill="#bfe3ff")
    for i in range(14):
        x, y = 30 + (i * 47) % 600, 30 + (i * 73) % 150
        d.ellipse((x, y, x + 60, y + 60), fill="#f7b6d2")
    d.rectangle((300, 180, 320, 360), fill="#6b4226")
    text_box(d, (190, 260), "Tokyo, Japan", 40)


def larkin(d: ImageDraw.ImageDraw) -> None:
    """A green street sign on a post."""
    d.rectangle((0, 280, 640, 360), fill="#777777")
    d.rectangle((310, 150, 326, 300), fill="#444444")
    text_box(d, (150, 90), "Larkin Square", 42, fill="#0a6b2f", ink="white")


def wild_chart(d: ImageDraw.ImageDraw) -> None:
    """A music chart position."""
    d.rectangle((0, 0, 640, 360), fill="#202020")
    d.text((60, 60), "#7 in Canada", font=font(52), fill="#ff5050")
    d.text((60, 170), "WILD", font=font(64), fill="white")
    for i, h in enumerate((60, 100, 40, 130, 80)):
        d.rectangle((380 + i * 44, 320 - h, 410 + i * 44, 320), fill="#50a0ff")


def herman_sun(d: ImageDraw.ImageDraw) -> None:
    """A sun over grass and a small dog shape: no text at all (OCR finds nothing)."""
    d.rectangle((0, 0, 640, 360), fill="#9fd8ff")
    d.ellipse((470, 30, 590, 150), fill="#ffd400")
    d.rectangle((0, 260, 640, 360), fill="#3c9a3c")
    d.ellipse((220, 200, 360, 270), fill="#8b5a2b")
    d.ellipse((340, 170, 400, 225), fill="#8b5a2b")


def blackhawks(d: ImageDraw.ImageDraw) -> None:
    """A rally scoreboard and a street sign."""
    d.rectangle((0, 0, 640, 360), fill="#303030")
    d.rectangle((40, 30, 600, 170), fill="#000000", outline="#c8102e", width=6)
    d.text((90, 72), "GO BLACKHAWKS", font=font(44), fill="#c8102e")
    text_box(d, (200, 250), "Madison St", 40, fill="#0a6b2f", ink="white")


def new_chicago(d: ImageDraw.ImageDraw) -> None:
    """A skyline of rectangles under a headline."""
    d.rectangle((0, 0, 640, 360), fill="#ffe9c7")
    for i, h in enumerate((120, 200, 160, 240, 140, 180, 100, 210)):
        d.rectangle((20 + i * 76, 360 - h, 80 + i * 76, 360), fill="#4a5a70")
    text_box(d, (60, 30), "Building a New Chicago", 36)


def vintage(d: ImageDraw.ImageDraw) -> None:
    """A golf green with a flag and a club sign."""
    d.rectangle((0, 0, 640, 360), fill="#a8d8f0")
    d.ellipse((-100, 200, 740, 520), fill="#3c9a3c")
    d.rectangle((470, 120, 475, 270), fill="#eeeeee")
    d.polygon([(475, 120), (540, 140), (475, 160)], fill="#d00000")
    text_box(d, (40, 40), "The Vintage", 40)
    text_box(d, (40, 130), "Palm Springs", 32)


# image id -> (split, drawing); ids are tweets of data/sample/{train,valid,test}.txt
IMAGES: dict[str, tuple[str, Draw]] = {
    "1015799": ("train", zimmerman),
    "1109405": ("train", tower_bridge),
    "563049": ("train", melee),
    "418340": ("train", coble),
    "1351124": ("train", pope),
    "1494239": ("valid", tokyo),
    "123765": ("valid", larkin),
    "143256": ("valid", wild_chart),
    "1291775": ("valid", herman_sun),
    "73168": ("test", blackhawks),
    "74083": ("test", new_chicago),
    "65769": ("test", vintage),
}


def make_image(draw: Draw) -> Image.Image:
    """A white canvas of :data:`SIZE` drawn on by ``draw``."""
    image = Image.new("RGB", SIZE, "white")
    draw(ImageDraw.Draw(image))
    return image


def main() -> None:
    """Write every image as ``<out>/<image_id>.jpg`` (JPEG quality 80, a few kB to ~30 kB each)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for image_id, (_split, draw) in IMAGES.items():
        path = out / f"{image_id}.jpg"
        make_image(draw).save(path, "JPEG", quality=80, optimize=True)
        print(f"{path} {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
