"""A rich progress bar with the training loss and tokens/s, shared by every update method.

The loss may be handed over as a device tensor: the bar reads it (``.item()``, which waits for the GPU) only
when it redraws, a few times a second, so a training loop on a GPU never stalls on its progress bar.

When stderr is not a terminal (output redirected, a CI log) a bar draws nothing until it ends, so a run of
minutes printed nothing at all: there, :class:`PlainProgress` writes one plain line at most every
``LOOPGATE_PROGRESS_EVERY`` seconds (default 10) instead — ``update support: step 120/400 (30 %) 41 s``.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

REDRAW_S = 0.25  # how often the loss shown is read back from the device
PROGRESS_EVERY_ENV = "LOOPGATE_PROGRESS_EVERY"
PROGRESS_EVERY_S = 10.0


def progress_every_s() -> float:
    """Seconds between plain progress lines: ``$LOOPGATE_PROGRESS_EVERY`` (0: every step), else 10."""
    raw = os.environ.get(PROGRESS_EVERY_ENV, "")
    try:
        return max(float(raw), 0.0) if raw.strip() else PROGRESS_EVERY_S
    except ValueError:
        return PROGRESS_EVERY_S  # a malformed value must not stop a training run; the default is safe


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class PlainProgress:
    """One plain line on stderr at most every :func:`progress_every_s` seconds (and one at the end): progress
    a log file or a pipe can show."""

    def __init__(self, total: int, label: str, unit: str = "step") -> None:
        self.total, self.label, self.unit = total, label, unit
        self.done = 0
        self.every = progress_every_s()
        self.start = self._printed = time.perf_counter()

    def due(self, n: int = 1) -> bool:
        """Whether advancing by ``n`` prints a line (the time has come, or it is the last step)."""
        return time.perf_counter() - self._printed >= self.every or self.done + n >= self.total

    def advance(self, n: int = 1, extra: str = "") -> None:
        if self.due(n):
            self.done += n
            self._printed = time.perf_counter()
            self.line(extra)
        else:
            self.done += n

    def line(self, extra: str = "") -> None:
        pct = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        tail = f" {extra}" if extra else ""
        print(f"{self.label}: {self.unit} {self.done}/{self.total}{pct} "
              f"{time.perf_counter() - self.start:.0f} s{tail}", file=sys.stderr, flush=True)


class TrainProgress:
    """``with TrainProgress(steps, "lora", enabled) as bar: bar.advance(loss, tokens)``; silent when disabled."""

    def __init__(self, steps: int, description: str, enabled: bool) -> None:
        self.steps, self.description, self.enabled = steps, description, enabled
        self.tokens = 0
        self.start = time.perf_counter()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._drawn = 0.0
        self._plain: PlainProgress | None = None

    def __enter__(self) -> TrainProgress:
        self.start = time.perf_counter()
        if self.enabled and not stderr_is_terminal():
            self._plain = PlainProgress(self.steps, self.description)
        elif self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.steps, loss="-", tps="-")
        return self

    def advance(self, loss: float | torch.Tensor, tokens: int) -> None:
        """Count one optimiser step that consumed ``tokens`` real tokens; ``loss`` is read only on a redraw."""
        self.tokens += tokens
        if self._plain is not None:
            # the loss is read (a device sync) only when a line is due
            shown = (float(loss.item()) if isinstance(loss, torch.Tensor) else loss) if self._plain.due() else None
            self._plain.advance(1, f"loss {shown:.4f}" if shown is not None else "")
            return
        if self._progress is None or self._task is None:
            return
        now = time.perf_counter()
        if now - self._drawn < REDRAW_S:
            self._progress.update(self._task, advance=1)
            return
        self._drawn = now
        shown = float(loss.item()) if isinstance(loss, torch.Tensor) else loss
        self._progress.update(self._task, advance=1, loss=f"{shown:.4f}", tps=f"{self.tokens_per_s:,.0f}")

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.elapsed_s, 1e-9)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
