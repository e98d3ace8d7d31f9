"""The trainer's progress display: a redrawn bar, a notebook output, or one line per epoch."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Progress", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``\\r`` does not redraw a line)."""
    shell = sys.modules.get("IPython")
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


class Progress:
    """A one-line progress display.

    ``mode``: "bar" redraws one line with ``\\r`` (a terminal), "notebook" updates one
    output in Jupyter, "epoch" prints one line per epoch (logs, CI), None prints nothing.
    "auto" picks "notebook" in Jupyter, "bar" on a terminal, and "epoch" otherwise or when
    the ``CI`` environment variable is set.
    """

    def __init__(self, mode="auto", stream=None, interval: float = 0.2):
        self.stream = stream if stream is not None else sys.stdout
        if mode == "auto":
            if in_notebook():
                mode = "notebook"
            elif os.environ.get("CI") or not getattr(self.stream, "isatty", lambda: False)():
                mode = "epoch"
            else:
                mode = "bar"
        if mode not in ("bar", "notebook", "epoch", None, False):
            raise ValueError(f"progress must be 'auto', 'bar', 'notebook', 'epoch' or None, "
                             f"got {mode!r}")
        self.mode, self.interval, self._last, self._handle = mode or None, interval, 0.0, None

    def _show(self, text: str, final: bool) -> None:
        if self.mode == "bar":
            self.stream.write("\r" + text.ljust(100) + ("\n" if final else ""))
            self.stream.flush()
        elif self.mode == "notebook":
            from IPython.display import display
            if self._handle is None:
                self._handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self._handle.update({"text/plain": text}, raw=True)
            if final:
                self._handle = None
        elif self.mode == "epoch" and final:
            print(text, file=self.stream, flush=True)

    def update(self, epoch, epochs, done, total, loss, acc) -> None:
        """Batch ``done`` of ``total`` of epoch ``epoch``: running loss and accuracy."""
        now = time.perf_counter()
        if self.mode in ("bar", "notebook") and (now - self._last >= self.interval or done == total):
            self._last = now
            bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
            self._show(f"epoch {epoch}/{epochs} [{bar}] {done}/{total} "
                       f"loss {loss:.4f} acc {acc:.3f}", final=False)

    def end_epoch(self, epochs, row: dict) -> None:
        """The epoch's line from its history ``row``."""
        text = (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  "
                f"loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.3f}")
        if "test_loss" in row:
            text += f"  test loss {row['test_loss']:.4f}  test acc {row['test_accuracy']:.3f}"
        self._show(text + f"  ({row['seconds']:.1f} s)", final=True)
