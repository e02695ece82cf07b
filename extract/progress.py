"""What a long loop shows while it runs: progress and log lines on stderr, never on stdout
(stdout holds a command's results).

Every loop reports through :class:`Progress` (or :func:`progress` around an iterable), never
tqdm directly. The mode, set once per process by :func:`configure_progress` (the CLI's
``--progress``), says how:

- ``bar``: a tqdm bar, for a terminal;
- ``lines``: one plain line every ``every`` seconds and one when the loop ends, each with
  done/total, rate and ETA, through ``logging`` (``vidstore.progress``, INFO): no carriage
  returns, so a SLURM log or a file reads line by line;
- ``auto`` (the default): ``bar`` when stderr is a terminal, else ``lines``;
- ``off``: nothing.

A loop that ends by an exception writes no final line: the error is the last word.

:func:`setup_logging` sends ``vidstore.*`` log records to stderr, one line each, tracebacks
left out, written through tqdm so that a bar in progress is redrawn under them, not torn.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

MODES = ("auto", "bar", "lines", "off")
DEFAULT_EVERY = 30.0  # seconds between two lines in ``lines`` mode

log = logging.getLogger("vidstore.progress")
_settings = {"mode": "auto", "every": DEFAULT_EVERY}


def configure_progress(mode: str = "auto", every: float = DEFAULT_EVERY) -> None:
    """How every later loop of this process shows its progress."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if every < 0:
        raise ValueError(f"seconds between progress lines must be 0 or more, got {every}")
    _settings.update(mode=mode, every=float(every))


def resolved_mode(mode: str | None = None) -> str:
    """bar, lines or off: ``auto`` decided by whether stderr is a terminal now."""
    mode = mode or _settings["mode"]
    if mode == "auto":
        isatty = getattr(sys.stderr, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    return mode


def format_duration(seconds: float) -> str:
    """42s, 3m05s, 2h14m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_rate(per_second: float, unit: str) -> str:
    """12.3 clips/s, or 4.2 s/epoch when slower than one a second."""
    if per_second <= 0:
        return f"? {unit}s/s"
    if per_second >= 1:
        return f"{per_second:.1f} {unit}s/s"
    return f"{1 / per_second:.1f} s/{unit}"


class Progress:
    """``done`` of ``total`` (None: unknown) ``unit``\\ s of a loop named ``what``.

    ``show=False`` shows nothing whatever the mode (a library call that was asked to be
    quiet); ``every`` overrides the process's seconds between lines."""

    def __init__(self, what: str, total: int | None, unit: str, *, show: bool = True, every: float | None = None):
        self.what, self.total, self.unit = what, total, unit
        self.mode = resolved_mode() if show else "off"
        self.every = _settings["every"] if every is None else every
        self.done = 0
        self.note = ""
        self.started = self.last_line = time.monotonic()
        self.closed = False
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(total=total, desc=what, unit=f" {unit}s", file=sys.stderr, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and self.done != self.total:  # at the total, the final line says it
            now = time.monotonic()
            if now - self.last_line >= self.every:
                self.last_line = now
                log.info(self.line(now))

    def set_note(self, text: str) -> None:
        """What the counts do not say (the last epoch's losses), shown after them."""
        self.note = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self, now: float | None = None, final: bool = False) -> str:
        """``what: done/total units (pct), rate, ETA``; the final one says how long it took."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        counts = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        text = f"{self.what}: {counts} {self.unit}s"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        if final:
            text += f" in {format_duration(elapsed)}, {format_rate(rate, self.unit)}"
        else:
            text += f", {format_rate(rate, self.unit)}"
            if self.total is not None:
                eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
                text += f", ETA {eta}"
        return f"{text}; {self.note}" if self.note else text

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and not failed:
            log.info(self.line(final=True))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)


def progress(items: Iterable, what: str, unit: str, *, total: int | None = None, show: bool = True) -> Iterator:
    """``items`` one by one, each counted once the caller is done with it. The final line
    comes when ``items`` run out; a caller that stops early (an error) gets none."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    shown = Progress(what, total, unit, show=show)
    try:
        for item in items:
            yield item
            shown.update()
    except BaseException:  # GeneratorExit too: the caller stopped before the end
        shown.close(failed=True)
        raise
    shown.close()


# -- log lines --------------------------------------------------------------------------------


class _LineFormatter(logging.Formatter):
    """``2025-06-01 12:00:03 message``; other levels than INFO say theirs; with ``names``
    the logger's name too. An exception adds its one-line summary, never a traceback."""

    def __init__(self, names: bool):
        super().__init__()
        self.names = names

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            text += f" ({type(err).__name__}: {err})"
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        name = f"[{record.name.removeprefix('vidstore.')}] " if self.names else ""
        return f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} {level}{name}{' '.join(text.splitlines())}"


class _StderrHandler(logging.Handler):
    """Writes to the stderr of the moment (tests swap it) through tqdm, which clears a bar
    in progress and redraws it under the line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """``vidstore.*`` records at ``level`` and above to stderr, one line each (DEBUG also
    names the logger). Called again, it replaces its handler rather than adding one."""
    logger = logging.getLogger("vidstore")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_LineFormatter(names=level <= logging.DEBUG))
    logger.addHandler(handler)
    logger.setLevel(level)
