"""Read the machine-readable (``-Y``) output of IBM Storage Scale's mm commands.

``mmgetstate -Y``, ``mmlscluster -Y`` and the other mm commands print colon-separated lines: per
section, one ``HEADER`` line naming the fields, then one line per record, values percent-encoded
(a ':' inside a value is ``%3A``). IBM Storage Scale documents the format under "-Y" in each
command's reference (e.g. https://www.ibm.com/docs/en/storage-scale/5.2.3?topic=reference-mmgetstate-command).
"""

from __future__ import annotations

from urllib.parse import unquote


def gpfs_records(text: str, section: str | None = None) -> list[dict[str, str]]:
    """The records of ``text`` (one dict per data line, keyed by the names of its section's HEADER
    line), of every section or only of ``section`` (the second field, e.g. ``clusterSummary``)."""
    headers: dict[tuple[str, str], list[str]] = {}
    records: list[dict[str, str]] = []
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 3:
            continue
        key = (fields[0], fields[1])
        if fields[2] == "HEADER":
            headers[key] = fields
        elif key in headers and (section is None or fields[1] == section):
            # a record may have fewer fields than its header (trailing empty values): zip stops early
            pairs = zip(headers[key], fields, strict=False)
            records.append({name: unquote(value) for name, value in pairs if name})
    return records


class FilterModule:
    def filters(self):
        return {"gpfs_records": gpfs_records}
