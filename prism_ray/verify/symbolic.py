"""Symbolic LaTeX equivalence through math-verify, in a reusable child process with a hard
wall-clock timeout.

math-verify times itself out with SIGALRM, which only works in a main thread and cannot
interrupt C code (a 10^(10^10) big-int power never returns to the interpreter). So it runs in a
child started with the "spawn" context (no fork of a threaded parent such as a Ray actor). The
child serves many checks; on a timeout or crash it is killed and a replacement is started at
once, so it warms up while the caller carries on. Cheap screens refuse hostile input before it
ever reaches the child.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import threading
import time
import weakref
from enum import Enum
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from prism_ray.verify.normalize import nesting_depth, unwrap_text_commands

if TYPE_CHECKING:  # the schema is only a type here: verify stays free of the config stack
    from prism_ray.config.schema import VerifierConfig

MAX_SYMBOLIC_CHARS = 512
MAX_EXPONENT_DIGITS = 4  # x^{9999} is fine for sympy; x^{99999...} is not worth computing
_TEXT_BLOCK = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}")
_EXPONENT = re.compile(r"\^|\*\*")
_BIG_FACTORIAL = re.compile(r"\d{4,}\s*!")
_PLAIN_OPERAND = re.compile(r"[+-]?[\w.]*")
_DIGIT_RUN = re.compile(r"\d+")
_TOWER_BASE = re.compile(rf"\d{{1,{MAX_EXPONENT_DIGITS + 1}}}")


class SymbolicOutcome(str, Enum):
    EQUAL = "equal"
    NOT_EQUAL = "not_equal"
    REFUSED = "refused"  # screened out as hostile or oversized; treat as not equal
    TIMEOUT = "timeout"
    ERROR = "error"


def prepare_latex(text: str) -> str:
    """\\dfrac/\\tfrac -> \\frac; \\text{...} blocks dropped (units or prose that sympy cannot
    read), unless that leaves nothing, in which case they are unwrapped instead."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    without_text = _TEXT_BLOCK.sub(" ", text).strip()
    return without_text if without_text else unwrap_text_commands(text).strip()


def is_safe_for_symbolic(text: str) -> bool:
    """Refuse what would only burn the timeout: long or deeply nested input, power towers
    (10^(10^10), 9**9**9, x^2^3), exponents with many digits, factorials of big numbers.
    A nested exponent of small integers (2^{2^{2}}, whose exponent is 4) is an ordinary
    number and passes."""
    if len(text) > MAX_SYMBOLIC_CHARS or nesting_depth(text) > 12 or _BIG_FACTORIAL.search(text):
        return False
    for match in _EXPONENT.finditer(text):
        operand, end = _exponent_operand(text, match.end())
        chained = _EXPONENT.match(text, _skip_spaces(text, end)) is not None
        if chained or not _exponent_is_tame(operand):
            return False
    return True


def _skip_spaces(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _exponent_operand(text: str, start: int) -> tuple[str, int]:
    """The exponent that begins at `start` (a bracketed group, or a signed run of word
    characters) and the index just past it."""
    index = _skip_spaces(text, start)
    if index < len(text) and text[index] in "{(":
        depth = 0
        for end in range(index, len(text)):
            depth += (text[end] in "{(") - (text[end] in "})")
            if depth == 0:
                return text[index : end + 1], end + 1
        return text[index:], len(text)
    match = _PLAIN_OPERAND.match(text, index)
    return match.group(0), match.end()


def _exponent_is_tame(operand: str) -> bool:
    if "\\exp" in operand or "!" in operand:
        return False
    if _EXPONENT.search(operand):  # a tower: tame only if the exponent is a small integer
        value = integer_tower(operand, bound=10**MAX_EXPONENT_DIGITS)
        return value is not None
    return all(len(run) <= MAX_EXPONENT_DIGITS for run in _DIGIT_RUN.findall(operand))


def integer_tower(text: str, bound: int) -> int | None:
    """The value of an integer power tower such as {2^{2^{2}}} or (3^2), if every level stays
    below `bound` in magnitude; None for anything else (a variable, a big level, a fraction).
    Levels are computed top-down, so 10^{10^{10}} is given up at 10^10 without computing it."""
    text = "".join(text.split())
    while len(text) >= 2 and text[0] + text[-1] in ("{}", "()") and _encloses(text):
        text = text[1:-1]
    sign = -1 if text.startswith("-") else 1
    text = text.removeprefix("-").removeprefix("+")
    base = _TOWER_BASE.match(text)
    if base is None:
        return None
    rest = text[base.end() :]
    if not rest:
        value = int(base.group())
    else:
        power = _EXPONENT.match(rest)
        exponent = None if power is None else integer_tower(rest[power.end() :], bound)
        if exponent is None or exponent < 0:
            return None
        value = _bounded_power(int(base.group()), exponent, bound)
    return None if value is None or abs(value) >= bound else sign * value


def _bounded_power(base: int, exponent: int, bound: int) -> int | None:
    if abs(base) <= 1 or exponent < bound.bit_length():  # |base| >= 2: 2**bits >= bound
        return base**exponent
    return None


def _encloses(text: str) -> bool:
    """True if text[0] is closed by the last character (not "(1)(2)")."""
    depth = 0
    for index, char in enumerate(text):
        depth += (char in "{(") - (char in "})")
        if depth == 0:
            return index == len(text) - 1
    return False


# ---- the child process -------------------------------------------------------------------------


def _serve(conn: Connection, memory_limit_mb: int | None, soft_timeout_s: int) -> None:
    """Child main loop: (predicted, truth) in, SymbolicOutcome value out, until EOF or None."""
    import logging

    if memory_limit_mb is not None:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    from math_verify import parse, verify

    # The first parse builds the LaTeX grammar and sympy caches: pay that before "ready" so
    # it never counts against a caller's timeout.
    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))
    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if request is None:
            return
        predicted, truth = request
        try:
            gold = parse(f"${truth}$", parsing_timeout=soft_timeout_s)
            answer = parse(f"${predicted}$", parsing_timeout=soft_timeout_s)
            equal = (
                bool(gold) and bool(answer) and verify(gold, answer, timeout_seconds=soft_timeout_s)
            )
            outcome = SymbolicOutcome.EQUAL if equal else SymbolicOutcome.NOT_EQUAL
        except Exception:  # MemoryError, RecursionError, sympy internals: all mean "cannot tell"
            outcome = SymbolicOutcome.ERROR
        conn.send(outcome.value)


class _Child:
    """One spawned child and the parent's end of its pipe."""

    def __init__(
        self, context: mp.context.SpawnContext, memory_limit_mb: int | None, soft_timeout_s: int
    ):
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_serve, args=(child_conn, memory_limit_mb, soft_timeout_s), daemon=True
        )
        self.process.start()
        child_conn.close()  # keep only the child's copy, so its death reads as EOF here
        self.ready = False
        self.dead = False

    def wait_ready(self, deadline: float) -> bool:
        """True once the child has imported math-verify; waits until `deadline` at most."""
        if self.ready or self.dead:
            return self.ready
        try:
            if self.conn.poll(max(deadline - time.monotonic(), 0.0)):
                self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            self.dead = True  # it exited during start-up (import error, memory limit)
        return self.ready

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()


def _stop_slot(slot: list[_Child]) -> None:
    while slot:
        slot.pop().stop()


class SymbolicChecker:
    """math-verify equivalence behind a hard per-call timeout, in one reusable child process.

    Thread-safe (one check at a time). `close()` (or the context manager) stops the child, and
    a later check would start a new one; a finalizer stops it if the checker is collected.
    """

    def __init__(self, settings: VerifierConfig) -> None:
        """Time and memory limits come from the run's ``verifier`` section (the schema holds
        their defaults)."""
        self.timeout_s = settings.timeout_s
        self.startup_timeout_s = settings.startup_timeout_s
        self._memory_limit_mb = settings.memory_limit_mb
        # math-verify's own SIGALRM limits (whole seconds, one per parse/compare stage) end most
        # slow checks politely, sparing a restart; the parent's kill is the hard bound behind.
        self._soft_timeout_s = max(1, int(self.timeout_s // 2))
        self._context = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._slot: list[_Child] = []  # zero or one child; a list so the finalizer can see it
        self._finalizer = weakref.finalize(self, _stop_slot, self._slot)
        self.restarts = 0

    def start(self) -> None:
        """Start the child and wait (up to startup_timeout_s) until math-verify is imported."""
        with self._lock:
            child = self._child()
            if not child.wait_ready(time.monotonic() + self.startup_timeout_s):
                self._replace(child)
                raise RuntimeError("math-verify child process did not start in time")

    def check(self, predicted: str, truth: str, deadline: float | None = None) -> SymbolicOutcome:
        """Is `predicted` symbolically equal to `truth`? Returns by `deadline`
        (time.monotonic() seconds; default now + timeout_s) whatever happens in the child."""
        predicted, truth = prepare_latex(predicted), prepare_latex(truth)
        if not (
            predicted and truth and is_safe_for_symbolic(predicted) and is_safe_for_symbolic(truth)
        ):
            return SymbolicOutcome.REFUSED
        deadline = time.monotonic() + self.timeout_s if deadline is None else deadline
        with self._lock:
            child = self._child()
            if not child.wait_ready(deadline):
                if child.dead or not child.process.is_alive():
                    return self._replace(child)
                return SymbolicOutcome.TIMEOUT  # still warming up after a restart; let it be
            try:
                child.conn.send((predicted, truth))
                if child.conn.poll(max(deadline - time.monotonic(), 0.0)):
                    return SymbolicOutcome(child.conn.recv())
            except (EOFError, OSError, ValueError):
                return self._replace(child)
            self._replace(child)
            return SymbolicOutcome.TIMEOUT

    @property
    def child_pid(self) -> int | None:
        """Process id of the current child, None when none is running."""
        return self._slot[0].process.pid if self._slot else None

    def close(self) -> None:
        """Stop the child process (idempotent)."""
        with self._lock:
            _stop_slot(self._slot)

    def __enter__(self) -> SymbolicChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _child(self) -> _Child:
        if not self._slot:
            self._slot.append(_Child(self._context, self._memory_limit_mb, self._soft_timeout_s))
        return self._slot[0]

    def _replace(self, child: _Child) -> SymbolicOutcome:
        """Kill a stuck or dead child and start its successor now, so it warms up meanwhile."""
        self._slot.remove(child)
        child.stop()
        self.restarts += 1
        self._child()
        return SymbolicOutcome.ERROR
