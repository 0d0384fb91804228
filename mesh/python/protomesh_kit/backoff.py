"""Exponential backoff with jitter, as gRPC's connection backoff defines it (mesh/backoff.ts).

grpc/grpc doc/connection-backoff.md: the first wait INITIAL_BACKOFF (1 s), each next one MULTIPLIER
(1.6) times longer up to MAX_BACKOFF (120 s), each randomised by ±JITTER (0.2) so that replicas
failing together (a control plane restarting under them) do not retry together. Unlike grpc's own,
every wait is jittered, the first too. ``random`` is injected so tests can pin it.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

INITIAL_MS = 1_000
MULTIPLIER = 1.6
JITTER = 0.2
MAX_MS = 120_000


class Backoff:
    """The waits between attempts of one thing that keeps failing; ``reset`` after a success."""

    def __init__(
        self,
        initial_ms: float = INITIAL_MS,
        max_ms: float = MAX_MS,
        multiplier: float = MULTIPLIER,
        jitter: float = JITTER,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not (initial_ms > 0 and multiplier >= 1 and 0 <= jitter < 1 and max_ms >= initial_ms):
            raise ValueError("backoff: needs initial_ms > 0, multiplier >= 1, 0 <= jitter < 1, max_ms >= initial_ms")
        self._initial_ms = initial_ms
        self._max_ms = max_ms
        self._multiplier = multiplier
        self._jitter = jitter
        self._random = random
        self._current_ms = initial_ms

    def next_ms(self) -> int:
        """The wait before the next attempt, in whole ms; the one after is longer, up to the maximum."""
        delay = self._current_ms * (1 + self._jitter * (2 * self._random() - 1))
        self._current_ms = min(self._current_ms * self._multiplier, self._max_ms)
        return max(1, round(delay))

    def reset(self) -> None:
        """Starts over from the first wait."""
        self._current_ms = self._initial_ms
