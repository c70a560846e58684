"""Data errors and the bad-row policy: a bad row either stops the read or is skipped and counted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

from prism_ray.config.schema import OnBadRow  # noqa: F401  (re-exported: one enum for config and readers)

T = TypeVar("T")
MAX_ROWS_LISTED = 5


class BadRowReason(str, Enum):
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    EMPTY_QUESTION = "empty_question"
    EMPTY_RESPONSE = "empty_response"
    MISSING_IMAGE = "missing_image"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_COUNT_MISMATCH = "image_count_mismatch"
    MALFORMED_JSON = "malformed_json"
    BAD_ENCODING = "bad_encoding"  # a JSON line that is not UTF-8 text


class DataError(ValueError):
    """A data file, directory or row that cannot be used. The message names the path (and row).

    Rows are numbered from 0 in file order; in a JSONL file row N is line N + 1.
    """

    def __init__(
        self,
        path: Path | str,
        reason: str,
        row: int | None = None,
        kind: BadRowReason | None = None,
    ) -> None:
        where = f"{path}" if row is None else f"{path}, row {row} (0-based)"
        super().__init__(f"{where}: {reason}")
        self.path, self.row, self.reason, self.kind = Path(path), row, reason, kind


class BadRow(Exception):
    """Raised while parsing one row; the reader turns it into a DataError or a counted skip."""

    def __init__(self, kind: BadRowReason, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass
class BadRowReport:
    """Rows read and rows skipped in one file, by reason, with the first few row numbers of each."""

    path: Path
    num_rows: int = 0
    counts: Counter[BadRowReason] = field(default_factory=Counter)
    first_rows: dict[BadRowReason, list[int]] = field(default_factory=dict)
    first_details: dict[BadRowReason, str] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    def add(self, row: int, bad: BadRow) -> None:
        self.counts[bad.kind] += 1
        rows = self.first_rows.setdefault(bad.kind, [])
        if len(rows) < MAX_ROWS_LISTED:
            rows.append(row)
        self.first_details.setdefault(bad.kind, bad.detail)

    def summary(self) -> str:
        kept = self.num_rows - self.num_skipped
        head = f"{self.path}: kept {kept} of {self.num_rows} rows"
        if not self.num_skipped:
            return head
        parts = [
            f"{kind.value} x{count} (rows {', '.join(map(str, self.first_rows[kind]))}"
            f"{', ...' if count > MAX_ROWS_LISTED else ''}; first: {self.first_details[kind]})"
            for kind, count in sorted(self.counts.items(), key=lambda item: item[0].value)
        ]
        return f"{head}; skipped {self.num_skipped} (0-based rows): " + "; ".join(parts)


@dataclass(frozen=True)
class ReadResult(Generic[T]):
    """The good records of a file and the report of what was skipped (empty under OnBadRow.error)."""

    records: list[T]
    report: BadRowReport

    def __len__(self) -> int:
        return len(self.records)
