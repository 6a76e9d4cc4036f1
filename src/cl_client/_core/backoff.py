"""Jittered exponential backoff (pure)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``initial * factor**n``, capped at ``maximum``, jittered into [delay/2, delay]."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return base / 2 + self._rng.random() * base / 2
