"""Capped exponential backoff with jitter: the one retry schedule of the broker reconnects, webhook retries and
outbox store writes.

`delay(n)` for the n-th consecutive failure (n >= 1) is drawn from [d/2, d] with d = min(cap, base * factor**(n-1)):
the spacing still grows, and many clients that failed together do not retry together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.factor < 1:
            raise ValueError(f"bad backoff: base {self.base_s}, cap {self.cap_s}, factor {self.factor}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after `attempt` consecutive failures."""
        if attempt < 1:
            return 0.0
        # Exponent bounded: factor**n overflows floats long after the cap is reached.
        return min(self.cap_s, self.base_s * self.factor ** min(attempt - 1, 64))

    def delay(self, attempt: int) -> float:
        top = self.ceiling(attempt)
        return top / 2 + self.rng.uniform(0, top / 2)
