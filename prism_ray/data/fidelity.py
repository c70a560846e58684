"""Perception fidelity: the share of a caption's claims that are true of the scene.

A caption segment is split into atomic claims, each checked against the ground-truth `Scene`:

- a header line ("... 4 shapes on a 3x3 grid.") claims one thing: the number of objects;
- an object line ("red circle with digit 3, top-left") claims that an object sits in that
  cell, that it has that colour, that it has that shape and, only when the line names a digit,
  that it carries that digit. A line about an empty cell (a hallucinated object) is false on
  every count; a digit named for an object that has none, or has another, is false;
- any other non-blank line is one false claim (an unreadable line asserts nothing true).

Fidelity is precision, not recall: an object left out is no claim at all (it costs fidelity
only through a header count that no longer matches). The fidelity of a set of responses is
sum(true) / sum(total) over their claims; format-invalid responses have no caption and are
left out of it (the format rate reports them). Pure: stdlib, the scene structure and
the format gate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prism_ray.data.scenes import POSITIONS, Scene, SceneObject
from prism_ray.verify.format_gate import check_format

_OBJECT_LINE = re.compile(
    r"(?P<color>[a-z]+) (?P<shape>[a-z]+)"
    r"(?: with digit (?P<digit>\d{1,6}))?"
    r", (?P<position>[a-z-]+)"
)
_HEADER_COUNT = re.compile(r"\b(\d{1,6}) shapes?\b")  # bounded: int() of any match is cheap
_BULLET = "-*• \t"


@dataclass(frozen=True)
class ClaimCheck:
    """How many of a caption's atomic claims are true, out of how many it makes."""

    true: int
    total: int

    def __add__(self, other: ClaimCheck) -> ClaimCheck:
        return ClaimCheck(self.true + other.true, self.total + other.total)


NO_CLAIMS = ClaimCheck(0, 0)


def caption_claims(caption_text: str, scene: Scene) -> ClaimCheck:
    """Check every claim of a caption segment (with or without its <caption> tags)."""
    body = caption_text.strip().removeprefix("<caption>").removesuffix("</caption>")
    by_cell = {obj.cell: obj for obj in scene.objects}
    check = NO_CLAIMS
    for raw in body.splitlines():
        line = raw.strip().lstrip(_BULLET).strip().rstrip(".").strip().lower()
        if line:
            check += _line_claims(line, scene, by_cell)
    return check


def _line_claims(line: str, scene: Scene, by_cell: Mapping[int, SceneObject]) -> ClaimCheck:
    described = _OBJECT_LINE.fullmatch(line)
    if described is not None and described["position"] in POSITIONS:
        return _object_claims(described, by_cell.get(POSITIONS.index(described["position"])))
    header = _HEADER_COUNT.search(line)
    if header is not None:
        return ClaimCheck(int(int(header[1]) == len(scene.objects)), 1)
    return ClaimCheck(0, 1)


def _object_claims(described: re.Match[str], obj: SceneObject | None) -> ClaimCheck:
    digit = described["digit"]
    if obj is None:  # nothing in that cell: existence, colour, shape (and digit) are all false
        return ClaimCheck(0, 3 + (digit is not None))
    truths = [True, described["color"] == obj.color, described["shape"] == obj.shape]
    if digit is not None:
        truths.append(obj.digit is not None and int(digit) == obj.digit)
    return ClaimCheck(sum(truths), len(truths))


def caption_fidelity(response_text: str, scene: Scene) -> ClaimCheck | None:
    """The claims of a response's caption; None when the response is format-invalid."""
    gate = check_format(response_text)
    return caption_claims(gate.caption, scene) if gate.ok and gate.caption is not None else None


def fidelity_rate(responses: Iterable[tuple[str, Scene | None]]) -> float | None:
    """Share of true claims over (response, scene) pairs; pairs without a scene or without a
    valid format are skipped. None when nothing was claimed (no fidelity to report)."""
    check = NO_CLAIMS
    for response, scene in responses:
        claims = caption_fidelity(response, scene) if scene is not None else None
        check += claims or NO_CLAIMS
    return check.true / check.total if check.total else None


def scene_to_json(scene: Scene) -> str:
    """Compact JSON of a scene: a list of {color, shape, cell, digit} (digit null if none)."""
    objects = [
        {"color": o.color, "shape": o.shape, "cell": o.cell, "digit": o.digit}
        for o in scene.objects
    ]
    return json.dumps(objects, separators=(",", ":"))


def scene_from_json(text: str) -> Scene:
    """Inverse of `scene_to_json`; ValueError when the text does not describe a scene."""
    objects = json.loads(text)
    if not isinstance(objects, list):
        raise ValueError(f"a scene is a JSON list of objects, got {type(objects).__name__}")
    return Scene(tuple(_scene_object(item) for item in objects))


def _scene_object(item: Any) -> SceneObject:
    if not isinstance(item, dict):
        raise ValueError(f"a scene object is a JSON object, got {item!r}")
    color, shape, cell, digit = (item.get(k) for k in ("color", "shape", "cell", "digit"))
    valid = (
        isinstance(color, str)
        and isinstance(shape, str)
        and type(cell) is int
        and 0 <= cell < len(POSITIONS)
        and (digit is None or type(digit) is int)
    )
    if not valid:
        raise ValueError(f"not a scene object: {item!r}")
    return SceneObject(color, shape, cell, digit)


def scene_from_extra_info(extra_info: Mapping[str, Any]) -> Scene | None:
    """The ground-truth scene a row carries in extra_info["scene"], if any.

    User data need not have one (or may use the key for something else): anything that is not
    a scene written by `scene_to_json` gives None, and fidelity is then not reported.
    """
    text = extra_info.get("scene")  # optional: only synthetic rows carry a scene
    if not isinstance(text, str):
        return None
    try:
        return scene_from_json(text)
    except ValueError:  # json.JSONDecodeError is a ValueError
        return None
