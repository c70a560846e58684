"""Data: the embedded synthetic task and readers for the published formats (PRISM_SPEC §7)."""

from prism_ray.data.errors import BadRowReason, BadRowReport, DataError, OnBadRow, ReadResult
from prism_ray.data.readers import read_rl_parquet, read_sharegpt, read_warmup_jsonl
from prism_ray.data.synthetic import DatasetSize, corpus_texts, synthesize

__all__ = [
    "BadRowReason",
    "BadRowReport",
    "DataError",
    "DatasetSize",
    "OnBadRow",
    "ReadResult",
    "corpus_texts",
    "read_rl_parquet",
    "read_sharegpt",
    "read_warmup_jsonl",
    "synthesize",
]
