"""Scenes of the synthetic task: coloured shapes on a 3x3 grid, some carrying a digit.

A `Scene` is the ground truth; the image is only a rendering of it, so every answer and every
caption is computed from the structure, never read back from pixels.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Saturated and far apart, so a tiny vision tower separates them at 64 px.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 50),
    "blue": (40, 80, 235),
    "yellow": (245, 205, 0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
GRID = 3
POSITIONS: tuple[str, ...] = (
    "top-left", "top", "top-right",
    "left", "center", "right",
    "bottom-left", "bottom", "bottom-right",
)  # fmt: skip
MIN_OBJECTS, MAX_OBJECTS = 2, 5
DIGIT_PROBABILITY = 0.5


@dataclass(frozen=True)
class SceneObject:
    """One shape: its colour, kind, grid cell (row-major index) and an optional digit 1-9."""

    color: str
    shape: str
    cell: int
    digit: int | None = None

    @property
    def position(self) -> str:
        return POSITIONS[self.cell]


@dataclass(frozen=True)
class Scene:
    """The objects of one image in reading order (by cell). Hashable: used to hold out eval scenes."""

    objects: tuple[SceneObject, ...]

    def digits(self) -> list[int]:
        return [obj.digit for obj in self.objects if obj.digit is not None]


def sample_scene(rng: random.Random, digit_probability: float = DIGIT_PROBABILITY) -> Scene:
    """Draw 2-5 objects in distinct cells; each carries a digit with ``digit_probability``
    (0: no digits, so no digit questions either)."""
    count = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    cells = sorted(rng.sample(range(GRID * GRID), count))
    objects = []
    for cell in cells:
        color, shape = rng.choice(COLOR_NAMES), rng.choice(SHAPES)
        digit = rng.randint(1, 9) if rng.random() < digit_probability else None
        objects.append(SceneObject(color, shape, cell, digit))
    return Scene(tuple(objects))


def render_png(scene: Scene, image_size: int = 64) -> bytes:
    """Draw the scene on white and encode it as PNG (no metadata, so the bytes are reproducible)."""
    image = Image.new("RGB", (image_size, image_size), "white")
    draw = ImageDraw.Draw(image)
    cell = image_size / GRID
    for obj in scene.objects:
        row, col = divmod(obj.cell, GRID)
        _draw_object(draw, obj, col * cell, row * cell, cell)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw_object(
    draw: ImageDraw.ImageDraw, obj: SceneObject, x: float, y: float, cell: float
) -> None:
    margin = 0.08 * cell
    left, top = round(x + margin), round(y + margin)
    right, bottom = round(x + cell - margin) - 1, round(y + cell - margin) - 1
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((left, top, right, bottom), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((left, top, right, bottom), fill=fill)
    else:
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    if obj.digit is not None:
        side = bottom - top
        # A triangle is narrow at the top: put its digit lower and smaller.
        scale, centre_y = (
            (0.42, top + 0.66 * side) if obj.shape == "triangle" else (0.56, top + side / 2)
        )
        height = scale * side
        box = ((left + right) / 2 - 0.3 * height, centre_y - height / 2, 0.6 * height, height)
        _draw_digit(draw, obj.digit, box, _ink(obj.color), width=max(1, round(cell / 10)))


# Seven-segment glyphs rather than a font: identical on every platform and legible at 64 px.
_SEGMENT_ENDS = {
    "a": ((0, 0), (1, 0)), "b": ((1, 0), (1, 0.5)), "c": ((1, 0.5), (1, 1)), "d": ((0, 1), (1, 1)),
    "e": ((0, 0.5), (0, 1)), "f": ((0, 0), (0, 0.5)), "g": ((0, 0.5), (1, 0.5)),
}  # fmt: skip
_DIGIT_SEGMENTS = {
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
    5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg",
}  # fmt: skip


def _draw_digit(
    draw: ImageDraw.ImageDraw,
    digit: int,
    box: tuple[float, float, float, float],
    ink: tuple[int, int, int],
    width: int,
) -> None:
    left, top, box_width, box_height = box
    for segment in _DIGIT_SEGMENTS[digit]:
        (x0, y0), (x1, y1) = _SEGMENT_ENDS[segment]
        start = (round(left + x0 * box_width), round(top + y0 * box_height))
        end = (round(left + x1 * box_width), round(top + y1 * box_height))
        draw.line((start, end), fill=ink, width=width)


def _ink(color: str) -> tuple[int, int, int]:
    """Black on light fills, white on dark ones: the digit must stay readable on every colour."""
    red, green, blue = COLORS[color]
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 110 else (255, 255, 255)
