"""Phase data: resolve a phase's data sources to records, and walk them with a cursor.

Synthetic sources map to the files the synthesizer wrote into the run directory; user
sources are read with the published-format readers. Skipped bad rows (when the source asks
for ``on_bad_row: skip``) are reported once per file, never dropped silently.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prism_ray.config.kinds import phase_kind
from prism_ray.config.schema import (
    RLParquetData,
    ShareGPTData,
    SyntheticData,
    WarmupJsonlData,
)
from prism_ray.data.errors import DataError
from prism_ray.data.readers import read_rl_parquet, read_sharegpt, read_warmup_jsonl

_READERS: dict[type, Callable] = {
    ShareGPTData: read_sharegpt,
    RLParquetData: read_rl_parquet,
    WarmupJsonlData: read_warmup_jsonl,
}
_SYNTHETIC_READERS = {".json": read_sharegpt, ".parquet": read_rl_parquet,
                      ".jsonl": read_warmup_jsonl}


def phase_records(phase: Any, assets: Any, log: Callable[[str], None] = print) -> list:
    """A phase's records, checked for that phase (``check_records``); the error names it."""
    try:
        records = load_records(phase.kind, phase.data, assets.dataset_dir, log,
                               sft_sources=getattr(phase, "sources", ()))
        phase.check_records(records)
    except (ValueError, OSError) as e:
        raise DataError(f"phase {phase.name!r}", str(e)) from None
    return records


def check_phase_data(phases: Sequence[Any], assets: Any, log: Callable[[str], None] = print
                     ) -> None:
    """Pre-flight: open and check every enabled phase's data before the first step, so a
    typo in a later phase's path or a file without its columns fails in seconds, not after
    hours of SFT. Raises DataError naming the phase, file and row."""
    counts = [f"{p.name} {len(phase_records(p, assets, log)):,}" for p in phases if p.enabled]
    log(f"[preflight] data of every phase read and checked: {', '.join(counts)} records")


def load_records(kind: str, sources: Sequence[Any], synthetic_dir: Callable[[SyntheticData], Path],
                 log: Callable[[str], None] = print, sft_sources: Sequence[str] = ()) -> list:
    """All records of a phase's data sources, in source order."""
    records: list = []
    for source in sources:
        if isinstance(source, SyntheticData):
            files = [synthetic_dir(source) / f for f in phase_kind(kind).synthetic_files]
            if kind == "sft" and sft_sources:
                files = [f for f in files if f.stem in sft_sources]
            for file in files:
                records += _read(_SYNTHETIC_READERS[file.suffix], file, "error", log)
        else:
            for path in source.paths:
                records += _read(_READERS[type(source)], Path(path), source.on_bad_row.value, log)
    if not records:
        raise ValueError(f"phase kind {kind!r}: its data sources hold no usable rows")
    return records


def _read(reader: Callable, path: Path, on_bad_row: str, log: Callable[[str], None]) -> list:
    result = reader(path, on_bad_row=on_bad_row)
    if result.report.num_skipped:
        log(f"[data] {result.report.summary()}")
    return result.records


@dataclass
class Cursor:
    """Seeded epoch-wise shuffled walk over records; its state is two integers and a seed,
    so a resumed run continues exactly where it stopped (no repeated, no skipped rows)."""

    size: int
    seed: int
    epoch: int = 0
    position: int = 0
    _order: list[int] = field(default_factory=list, repr=False)

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if not self._order:
                self._order = self._permutation(self.epoch)
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            end = min(self.size, self.position + count - len(out))
            out += self._order[self.position:end]
            self.position = end
        return out

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(self.size))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def state(self) -> dict[str, int]:
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch,
                "position": self.position}

    @classmethod
    def from_state(cls, state: dict[str, int]) -> Cursor:
        return cls(**state)
