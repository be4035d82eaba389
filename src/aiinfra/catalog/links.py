"""Interconnect link rates.

InfiniBand per-port data rates (4x links) from the InfiniBand Trade Association roadmap:
HDR 200 Gb/s, NDR 400 Gb/s (NDR200 is a split 2x port), XDR 800 Gb/s.
Switch radix: NVIDIA Quantum-2 QM9700/QM9790 have 64 NDR ports; Quantum QM8700 has 40 HDR ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiinfra.catalog.names import lookup


@dataclass(frozen=True)
class LinkRate:
    name: str
    gbps: int  # Gb/s per port, one direction
    ibstat_rate: int  # the "Rate:" ibstat prints for an Active port at this speed
    switch_radix: int  # ports of the usual switch of this generation

    @property
    def gbytes_per_s(self) -> float:
        return self.gbps / 8


LINK_RATES: dict[str, LinkRate] = {
    r.name: r
    for r in (
        LinkRate("hdr200", 200, 200, 40),
        LinkRate("ndr200", 200, 200, 64),
        LinkRate("ndr400", 400, 400, 64),
        LinkRate("xdr800", 800, 800, 64),
    )
}


def link_rate(name: str) -> LinkRate:
    return lookup(LINK_RATES, {"ndr": "ndr400", "hdr": "hdr200", "xdr": "xdr800"}, name, "link rate")
