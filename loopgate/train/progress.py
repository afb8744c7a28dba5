"""A rich progress bar with the training loss and tokens/s, shared by every update method.

The loss may be handed over as a device tensor: the bar reads it (``.item()``, which waits for the GPU) only
when it redraws, a few times a second, so a training loop on a GPU never stalls on its progress bar.
"""

from __future__ import annotations

import time
from types import TracebackType

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

REDRAW_S = 0.25  # how often the loss shown is read back from the device


class TrainProgress:
    """``with TrainProgress(steps, "lora", enabled) as bar: bar.advance(loss, tokens)``; silent when disabled."""

    def __init__(self, steps: int, description: str, enabled: bool) -> None:
        self.steps, self.description, self.enabled = steps, description, enabled
        self.tokens = 0
        self.start = time.perf_counter()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._drawn = 0.0

    def __enter__(self) -> TrainProgress:
        self.start = time.perf_counter()
        if self.enabled:
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
