"""What a run shows on its console: per-step progress, and how much third-party output.

Progress of a phase is either a live bar (``tqdm``: step/total, elapsed, ETA, tokens/s and the
phase's headline metrics) when stdout is a terminal, or, in a log file, one plain line every
``PRISM_RAY_PROGRESS_STEPS`` steps (default 10) or ``PRISM_RAY_PROGRESS_SECONDS`` seconds
(default 30), whichever comes first, plus always the first and the last step of a phase.
``PRISM_RAY_PROGRESS`` picks the mode: ``auto`` (default), ``bar``, ``lines`` (throttled),
``all`` (a line for every step) or ``off`` (phase summaries only). Only the console is
throttled: ``metrics.jsonl`` and the tracking sink receive every step.

``quiet()`` silences the chatter of the libraries below the driver (Ray's and MLflow's INFO
lines); the actors' own output stays in Ray's log folder unless the run is verbose, in which
case the driver starts Ray with ``log_to_driver`` and everything is shown as before.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

MODES = ("auto", "bar", "lines", "all", "off")
DEFAULT_EVERY_STEPS = 10
DEFAULT_EVERY_SECONDS = 30.0


@dataclass(frozen=True)
class ProgressSettings:
    mode: str = "auto"
    every_steps: int = DEFAULT_EVERY_STEPS  # 0: no step-count trigger
    every_seconds: float = DEFAULT_EVERY_SECONDS  # 0: no time trigger

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ProgressSettings:
        env = os.environ if environ is None else environ
        mode = env.get("PRISM_RAY_PROGRESS", "auto").strip().lower() or "auto"
        if mode not in MODES:
            raise ValueError(f"PRISM_RAY_PROGRESS={mode!r}: expected one of {', '.join(MODES)}")
        return cls(mode,
                   _number(env, "PRISM_RAY_PROGRESS_STEPS", DEFAULT_EVERY_STEPS, int),
                   _number(env, "PRISM_RAY_PROGRESS_SECONDS", DEFAULT_EVERY_SECONDS, float))

    def resolved_mode(self, stream: IO[str]) -> str:
        """``bar``, ``lines``, ``all`` or ``off``: ``auto`` is a bar on a terminal."""
        if self.mode != "auto":
            return self.mode
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"


def _number(env, name: str, default, kind: Callable):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r}: expected a number ≥ 0")
    return value


class LineThrottle:
    """Which steps of a phase get a printed line in a log: the first one seen (a resumed phase
    starts mid-way), the last, every ``every_steps``-th, and any after ``every_seconds``
    without a line."""

    def __init__(self, total: int, every_steps: int, every_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.every_steps, self.every_seconds = total, every_steps, every_seconds
        self.clock = clock
        self.last_shown: float | None = None

    def due(self, done: int) -> bool:
        """``done``: steps of the phase finished, this one included (1-based)."""
        now = self.clock()
        show = (self.last_shown is None or done >= self.total
                or (self.every_steps > 0 and done % self.every_steps == 0)
                or (self.every_seconds > 0 and now - self.last_shown >= self.every_seconds))
        if show:
            self.last_shown = now
        return show


class PhaseBar:
    """A live ``tqdm`` bar for one phase; while it is open, lines printed by anything else in
    the process go above it instead of through it."""

    def __init__(self, phase: str, total: int, stream: IO[str]) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"[{phase}]", unit="step", file=stream,
                        dynamic_ncols=True, leave=True, smoothing=0.1, mininterval=0.5,
                        bar_format="{desc} {n_fmt}/{total_fmt} |{bar:24}| {elapsed}<{remaining}, "
                                   "{rate_fmt}{postfix}")
        self.started = False
        _open_bars.append(self)
        _redirect(stream)

    def update(self, phase_step: int, postfix: str) -> None:
        if not self.started and phase_step:  # a resumed phase: the bar starts mid-way
            self.bar.n = self.bar.last_print_n = self.bar.initial = phase_step
        self.started = True
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(1)
        if self.bar.n >= (self.bar.total or 0):
            self.close()

    def close(self) -> None:
        if self in _open_bars:
            self.bar.close()
            _open_bars.remove(self)
            if not _open_bars:
                _restore()


# ───────────────────── printing above an open bar ─────────────────────

_open_bars: list[PhaseBar] = []
_saved: tuple[IO[str], IO[str]] | None = None


class _AboveBars:
    """A stdout/stderr stand-in that writes whole lines above the open bars."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.pending = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        from tqdm import tqdm

        with self.lock:
            self.pending += text
            if "\n" in self.pending:
                lines, self.pending = self.pending.rsplit("\n", 1)
                with tqdm.external_write_mode(file=self.stream):
                    self.stream.write(lines + "\n")
                    self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _redirect(stream: IO[str]) -> None:
    global _saved
    if _saved is None:
        _saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _AboveBars(sys.stdout), _AboveBars(sys.stderr)


def _restore() -> None:
    global _saved
    if _saved is not None:
        for proxy in (sys.stdout, sys.stderr):
            if isinstance(proxy, _AboveBars) and proxy.pending:
                proxy.stream.write(proxy.pending)
        sys.stdout, sys.stderr = _saved
        _saved = None


def close_bars() -> None:
    """Close every open bar (a phase that failed mid-way) and give stdout/stderr back."""
    for bar in list(_open_bars):
        bar.close()
    _restore()


# ───────────────────── third-party chatter ─────────────────────

_QUIET_LOGGERS = ("ray", "mlflow", "alembic", "deepspeed", "transformers", "vllm")


class Quiet:
    """Raises the console threshold of the libraries' loggers to WARNING in this process;
    ``restore()`` puts back what was there. Verbose: does nothing."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.saved: list[tuple[object, int]] = []
        self.env_saved: dict[str, str | None] = {}
        if verbose:
            return
        # Loggers configured on import read these; those imported already are set below.
        for key, value in (("MLFLOW_LOGGING_LEVEL", "WARNING"),):
            self.env_saved[key] = os.environ.get(key)
            os.environ.setdefault(key, value)
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            # Ray resets its logger's level in ray.init, not its handlers' levels.
            for target in (logger, *logger.handlers):
                self.saved.append((target, target.level))
                if target.level < logging.WARNING:
                    target.setLevel(logging.WARNING)

    def restore(self) -> None:
        for target, level in reversed(self.saved):
            target.setLevel(level)
        self.saved = []
        for key, value in self.env_saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.env_saved = {}


def actor_log_dir() -> str | None:
    """Where Ray keeps the actors' stdout/stderr of this session (None if not known)."""
    try:
        import ray

        node = ray._private.worker._global_node  # no public accessor in Ray 2.x
        return node.get_logs_dir_path() if node is not None else None
    except Exception:  # noqa: BLE001 — only a hint on the console
        return None
