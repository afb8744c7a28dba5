"""A rich progress bar with the training loss and tokens/s, shared by every update method."""

from __future__ import annotations

import time
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class TrainProgress:
    """``with TrainProgress(steps, "lora", enabled) as bar: bar.advance(loss, tokens)``; silent when disabled."""

    def __init__(self, steps: int, description: str, enabled: bool) -> None:
        self.steps, self.description, self.enabled = steps, description, enabled
        self.tokens = 0
        self.start = time.perf_counter()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

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

    def advance(self, loss: float, tokens: int) -> None:
        """Count one optimiser step that consumed ``tokens`` real tokens."""
        self.tokens += tokens
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4f}", tps=f"{self.tokens_per_s:,.0f}")

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.elapsed_s, 1e-9)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
