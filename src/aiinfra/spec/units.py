"""Quantities with units in the blueprint: ``2TiB``, ``100 PB``, ``1 TB/s``.

Sizes accept SI (kB, MB, GB, TB, PB = powers of 1000) and IEC (KiB, MiB, GiB, TiB, PiB = powers of
1024) suffixes; rates accept ``B/s`` with the same prefixes, or ``Gb/s``-style bit rates.
A bare number is refused: the unit is part of the value.
"""

from __future__ import annotations

import re

_SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
}
_BIT_RATE_UNITS: dict[str, float] = {"Kb/s": 1e3 / 8, "Mb/s": 1e6 / 8, "Gb/s": 1e9 / 8, "Tb/s": 1e12 / 8}

_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]+)\s*$")


def _split(value: object, what: str, example: str) -> tuple[float, str]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a {what} with a unit such as '{example}', got {type(value).__name__}")
    if isinstance(value, (int, float)):
        raise ValueError(f"{value} has no unit: write it as a {what} such as '{example}'")
    m = _QUANTITY.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a {what}: write a number and a unit such as '{example}'")
    return float(m.group(1)), m.group(2)


def parse_bytes(value: object) -> int:
    """``"2TiB"`` -> 2199023255552."""
    number, unit = _split(value, "size", "2TiB")
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit '{unit}' in '{value}': use one of {', '.join(_SIZE_UNITS)}")
    return int(round(number * _SIZE_UNITS[unit]))


def parse_bytes_per_s(value: object) -> float:
    """``"1TB/s"`` -> 1e12; ``"400Gb/s"`` -> 5e10."""
    number, unit = _split(value, "rate", "1TB/s")
    if unit in _BIT_RATE_UNITS:
        return number * _BIT_RATE_UNITS[unit]
    if unit.endswith("/s") and unit[:-2] in _SIZE_UNITS:
        return number * _SIZE_UNITS[unit[:-2]]
    raise ValueError(f"unknown rate unit '{unit}' in '{value}': use e.g. GB/s, TB/s or Gb/s")


def format_bytes(n: float, binary: bool = True) -> str:
    """A short human form: ``format_bytes(80 * 2**30) == '80 GiB'``."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] if binary else ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    step = 1024 if binary else 1000
    value = float(n)
    for unit in units:
        if abs(value) < step or unit == units[-1]:
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
        value /= step
    raise AssertionError("unreachable")
