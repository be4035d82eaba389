"""A site's cabling sheet (CSV) -> the blueprint's ``fabric.scalable_units`` map.

Sites keep their cabling in a spreadsheet: one row per node (or per node port) with the node's
name and the scalable unit its leaf switches belong to. Only two columns are read, found by their
header (case-insensitive): ``host`` (or ``node``/``hostname``) and ``su`` (``7`` or ``su07``);
any other column (rack, leaf, port, cable id) is ignored. Rows per port repeat a node: they must
agree on its SU. Rows without a host (switch-to-switch cables, as in ``aiinfra fabric cabling``'s
plan) are skipped. Every problem names the file and line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ClusterShell.NodeSet import NodeSet

from aiinfra.errors import BlueprintError, Problem

HOST_COLUMNS = ("host", "node", "hostname", "node_name")
SU_COLUMNS = ("su", "scalable_unit", "scalable unit")


def _problem(line: int, message: str, hint: str) -> Problem:
    return Problem((), "bad-cabling", message, hint=hint, line=line)


def read_cabling(path: Path) -> dict[int, list[str]]:
    """SU -> its nodes (in file order), or BlueprintError naming each bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError(str(path), [Problem((), "unreadable-file", f"cannot read: {exc}",
                                                 hint="give a readable UTF-8 CSV file")]) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise BlueprintError(str(path), [_problem(1, "the file is empty", "the first row names the columns: host,su")])
    header = [c.strip().lower() for c in rows[0]]
    host_col = next((header.index(c) for c in HOST_COLUMNS if c in header), None)
    su_col = next((header.index(c) for c in SU_COLUMNS if c in header), None)
    if host_col is None or su_col is None:
        raise BlueprintError(str(path), [_problem(1, f"no host or su column in the header {rows[0]}",
                                                  "name the columns host and su (other columns are ignored)")])
    problems: list[Problem] = []
    su_of: dict[str, tuple[int, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(host_col, su_col):
            problems.append(_problem(line, f"row has {len(row)} columns, the header {len(header)}", "fill every row"))
            continue
        host, su_text = row[host_col].strip(), row[su_col].strip()
        if not host:
            continue
        m = re.fullmatch(r"(?:su)?0*(\d{1,5})", su_text, re.IGNORECASE)
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", host):
            problems.append(_problem(line, f"'{host}' is not a host name", "lower-case letters, digits and '-'"))
        elif not m or int(m.group(1)) < 1:
            problems.append(_problem(line, f"'{su_text}' is not an SU number", "write it as 7 or su07"))
        elif host in su_of and su_of[host][0] != int(m.group(1)):
            first_su, first_line = su_of[host]
            problems.append(_problem(line, f"{host} is in SU {m.group(1)} here and SU {first_su} on line {first_line}",
                                     "a node's ports all go to the leaves of one SU"))
        else:
            su_of.setdefault(host, (int(m.group(1)), line))
        if len(problems) >= 50:
            break
    if problems:
        raise BlueprintError(str(path), problems)
    out: dict[int, list[str]] = {}
    for host, (su, _line) in su_of.items():
        out.setdefault(su, []).append(host)
    return dict(sorted(out.items()))


def scalable_units_yaml(units: dict[int, list[str]]) -> str:
    """The ``fabric.scalable_units`` block, folded hostlists, ready to paste under ``fabric:``."""
    lines = ["scalable_units:                  # from the site's cabling sheet (aiinfra fabric import-cabling)"]
    lines += [f"  {su}: {NodeSet.fromlist(hosts)}" for su, hosts in units.items()]
    return "\n".join(lines) + "\n"
