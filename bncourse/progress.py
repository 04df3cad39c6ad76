"""Progress bars: one line redrawn in place on a terminal, a line per step elsewhere (logs,
CI). Shared by the class grader and the experiment runner."""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Progress", "duration"]


def duration(seconds) -> str:
    """'12s', '3m05s' or '2h01m'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """``[ 12/300]  4.0%  elapsed 0:41  ETA 16:20`` on one line (a line per step if no tty)."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self.lock = threading.Lock()

    @staticmethod
    def _clock(seconds: float) -> str:
        seconds = int(seconds)
        hours, rest = divmod(seconds, 3600)
        return (f"{hours}:" if hours else "") + f"{rest // 60:d}:{rest % 60:02d}"

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = "?" if not self.done else self._clock(elapsed / self.done * (self.total - self.done))
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = len(str(self.total))
        return (
            f"[{self.done:{width}d}/{self.total}] {pct:5.1f}%  elapsed "
            f"{self._clock(elapsed)}  ETA {eta}"
        )

    def step(self, note: str = "") -> None:
        with self.lock:
            self.done += 1
            text = self.line() + (f"  {note}" if note else "")
            if self.tty:
                self.stream.write("\r" + text.ljust(100))
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
