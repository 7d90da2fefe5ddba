"""The comparator's memory of recent answers: per output and side, the values of the last `seconds`, bounded.

The shift is judged over the analysis window, so old answers age out; the bound keeps a busy model's comparator
at a fixed size (`max_values` per output and side, oldest dropped first) whatever the traffic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_VALUES = 20_000


@dataclass
class _Series:
    chunks: deque[tuple[float, npt.NDArray[Any]]] = field(default_factory=deque)
    count: int = 0


class Window:
    """Keyed by (output, side, series): `series` is "values" (numbers) or "classes" (categories)."""

    def __init__(
        self, seconds: float, max_values: int = MAX_VALUES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if seconds <= 0 or max_values < 1:
            raise ValueError(f"window of {seconds} s and {max_values} values: both must be positive")
        self.seconds = seconds
        self.max_values = max_values
        self._clock = clock
        self._series: dict[tuple[str, str, str], _Series] = {}

    def add(self, output: str, side: str, series: str, values: npt.NDArray[Any]) -> None:
        flat = values.reshape(-1)[-self.max_values :]
        if flat.size == 0:
            return
        entry = self._series.setdefault((output, side, series), _Series())
        entry.chunks.append((self._clock(), flat))
        entry.count += flat.size
        self._evict(entry)

    def values(self, output: str, side: str, series: str) -> npt.NDArray[Any]:
        entry = self._series.get((output, side, series))
        if entry is None:
            return np.empty(0)
        self._evict(entry)
        if not entry.chunks:
            return np.empty(0)
        return np.concatenate([chunk for _, chunk in entry.chunks])

    def outputs(self) -> list[str]:
        return sorted({output for output, _, _ in self._series})

    def size(self) -> int:
        """Values held in all, for the comparator's own memory gauge."""
        return sum(entry.count for entry in self._series.values())

    def _evict(self, entry: _Series) -> None:
        oldest = self._clock() - self.seconds
        while entry.chunks and (entry.chunks[0][0] < oldest or entry.count > self.max_values):
            _, chunk = entry.chunks.popleft()
            entry.count -= chunk.size
