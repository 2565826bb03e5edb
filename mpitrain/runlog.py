"""``train.log``: what rank 0 printed, kept in the run's folder beside its results.

Rank 0's ``sys.stdout`` and ``sys.stderr`` are replaced by :class:`Tee` streams that write to
the terminal as before and append complete lines to the log. A progress line rewritten in place
on a terminal (``\\r`` ... ``ESC[K``) reaches the log as one line per version, without escape
codes. Writes go straight to the file descriptor (no Python buffer), so a line in the log is
on disk when it is printed. A failed write (full disk) stops the log and is remembered in
:attr:`RunLog.error`; the trainer reports it.
"""
from __future__ import annotations

import os
import sys


class RunLog:
    """The log file of one run; :meth:`start` tees rank 0's output into it, :meth:`close` stops."""

    def __init__(self, path, append: bool):
        self.path = path
        self.error: str | None = None
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o644)
        self._streams = None

    def start(self) -> "RunLog":
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = Tee(sys.stdout, self)
        sys.stderr = Tee(sys.stderr, self)
        return self

    def write_text(self, text: str) -> None:
        if self._fd < 0 or self.error is not None:
            return
        try:
            os.write(self._fd, text.encode("utf-8", "replace"))
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        if self._streams is not None:
            for tee in (sys.stdout, sys.stderr):
                if isinstance(tee, Tee):
                    tee.finish()
            sys.stdout, sys.stderr = self._streams
            self._streams = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Tee:
    """A text stream that writes to ``stream`` and hands complete lines to ``log``."""

    def __init__(self, stream, log: RunLog):
        self.stream = stream
        self.log = log
        self._line = ""

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        self._line += text.replace("\033[K", "")
        if "\n" in self._line or "\r" in self._line:
            *complete, self._line = self._line.replace("\r", "\n").split("\n")
            lines = [line for line in complete if line]  # a rewrite in place keeps each version
            if lines:
                self.log.write_text("".join(line + "\n" for line in lines))
        return written

    def finish(self) -> None:
        if self._line:
            self.log.write_text(self._line + "\n")
            self._line = ""

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return self.stream.encoding
