"""Row-level checks shared by the readers. Each raises `BadRow` with the reason and a detail."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from prism_ray.data.errors import BadRow, BadRowReason
from prism_ray.prompting import IMAGE_PLACEHOLDER

# sharegpt "conversations" use from/value with these speaker names.
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}  # fmt: skip


def require(row: dict[str, Any], key: str, kind: type, name: str | None = None) -> Any:
    """row[key], which must be present, not null, and an instance of `kind`."""
    label = name or key
    value = row.get(key)  # a missing key and a null are the same defect here
    if value is None:
        raise BadRow(BadRowReason.MISSING_FIELD, f"missing field {label!r}")
    if not isinstance(value, kind):
        got = type(value).__name__
        raise BadRow(BadRowReason.WRONG_TYPE, f"field {label!r} must be {kind.__name__}, got {got}")
    return value


def require_str_list(row: dict[str, Any], key: str) -> list[str]:
    values = require(row, key, list)
    if not all(isinstance(value, str) for value in values):
        raise BadRow(BadRowReason.WRONG_TYPE, f"field {key!r} must be a list of strings")
    return values


def parse_turns(messages: list[Any]) -> list[tuple[str, str]]:
    """(role, content) per turn, from role/content or sharegpt from/value dictionaries."""
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRow(BadRowReason.WRONG_TYPE, f"turn {index} must be an object")
        role_key, content_key = ("role", "content") if "role" in message else ("from", "value")
        role = require(message, role_key, str, f"turn {index}.{role_key}")
        content = require(message, content_key, str, f"turn {index}.{content_key}")
        if role not in _SHAREGPT_ROLES:
            raise BadRow(BadRowReason.WRONG_TYPE, f"turn {index} has an unknown role {role!r}")
        turns.append((_SHAREGPT_ROLES[role], content))
    return turns


def question_from(turns: list[tuple[str, str]], num_images: int | None) -> str:
    """The last user turn without `<image>` placeholders; when `num_images` is given, the
    placeholders of all turns must number exactly that many (one per image, in order)."""
    user_turns = [content for role, content in turns if role == "user"]
    if not user_turns:
        raise BadRow(BadRowReason.MISSING_FIELD, "no user turn")
    placeholders = sum(content.count(IMAGE_PLACEHOLDER) for _, content in turns)
    if num_images is not None and placeholders != num_images:
        raise BadRow(
            BadRowReason.IMAGE_COUNT_MISMATCH,
            f"{placeholders} {IMAGE_PLACEHOLDER} placeholder(s) but {num_images} image(s)",
        )
    question = user_turns[-1].replace(IMAGE_PLACEHOLDER, "").strip()
    if not question:
        raise BadRow(BadRowReason.EMPTY_QUESTION, "the question is empty")
    return question


def load_image_file(reference: str, base: Path) -> bytes:
    """Bytes of an image file, relative to `base` unless absolute, validated by decoding."""
    path = Path(reference) if Path(reference).is_absolute() else base / reference
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        why = error.strerror if isinstance(error, OSError) else str(error)
        raise BadRow(
            BadRowReason.MISSING_IMAGE, f"cannot read image {str(path)!r} ({why})"
        ) from None
    return validated_image(data, repr(str(path)))


def validated_image(data: bytes, what: str) -> bytes:
    """`data` unchanged, after a full decode with Pillow."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    # Pillow's decoders raise many unrelated types (OSError, SyntaxError, ValueError, struct
    # errors, DecompressionBombError): any of them means the same thing to a reader.
    except Exception as error:
        raise BadRow(
            BadRowReason.CORRUPT_IMAGE, f"image {what} cannot be decoded ({error})"
        ) from None
    return data
