"""Shared pieces of the planner: the error type, units and small formatting helpers."""

from __future__ import annotations

import math

GB = 1e9  # decimal gigabyte: papers and model cards
GIB = 2**30  # binary gibibyte: what a GPU reports
DAY_S = 86_400.0
HOUR_S = 3_600.0
YEAR_H = 8_760.0


class PlanError(ValueError):
    """The request cannot be planned (it does not fit, does not divide, or is inconsistent).

    The message carries the numbers and a way out; the CLI prints it, and validation turns it
    into a blueprint Problem at the job's key path.
    """


def gb(n: float) -> str:
    """``141.1 GB`` (decimal, one decimal)."""
    return f"{n / GB:.1f} GB"


def gib(n: float) -> str:
    """``80.0 GiB`` (binary, one decimal)."""
    return f"{n / GIB:.1f} GiB"


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n``, ascending."""
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def require_positive(**values: float | int | None) -> None:
    """PlanError for the first value that is not positive (None is allowed: 'auto')."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise PlanError(f"{name.replace('_', '-')} must be positive, got {value}")
