"""Filters of the slurm role that write a secret where another program parses it back.

In Python rather than Jinja: ansible-core 2.19 escapes backslashes in the string constants of an
expression (AnsibleLexer in ansible/_internal/_templating/_jinja_bits.py), so a template cannot
name a single backslash, which both encodings below need.

- ``aiinfra_slurm_conf_value``: a value of a slurm.conf-like file (slurmdbd.conf StoragePass), as
  Slurm's parser reads a line back (src/common/parse_config.c, the same in 22.05 and 24.11):
  ``_strip_comments`` ends the line at a ``#`` not escaped by a backslash, ``_strip_escapes`` then
  drops every backslash and keeps the character after it, and ``keyvalue_pattern`` takes the value
  either as ``"..."`` (any character but ``"``) or unquoted (no whitespace); ``fgets`` reads one
  line into a 4096-byte buffer. So backslashes and ``#`` are escaped and the value is quoted, or
  left unquoted when it holds a ``"``. What neither form can carry is refused.
- ``aiinfra_slurm_conf_problem``: why a value cannot be written so ('' when it can); never the value.
- ``aiinfra_mariadb_string``: a MariaDB string literal, quotes included, for a session whose
  sql_mode lacks NO_BACKSLASH_ESCAPES (the role sets sql_mode ''): backslashes and quotes doubled.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# Slurm reads a configuration line with fgets into a 4096-byte buffer (BUFFER_SIZE, parse_config.c).
_SLURM_LINE_MAX = 4000


def aiinfra_slurm_conf_problem(value: object) -> str:
    if not isinstance(value, str):
        return "it is not a string"
    if any(c in value for c in "\n\r\0"):
        return "it holds a line break or a NUL character (a value is one line)"
    if '"' in value and (value.startswith('"') or any(c.isspace() for c in value)):
        return ("it holds a double quote together with whitespace, or as its first character (a value is "
                'either "..." without a double quote inside, or unquoted without whitespace)')
    if len(value.encode()) > _SLURM_LINE_MAX:
        return f"it is longer than {_SLURM_LINE_MAX} bytes (Slurm reads a line into a 4096-byte buffer)"
    return ""


def aiinfra_slurm_conf_value(value: object) -> str:
    problem = aiinfra_slurm_conf_problem(value)
    if problem:
        raise AnsibleFilterError(f"aiinfra_slurm_conf_value: a Slurm configuration file cannot carry it: {problem}")
    assert isinstance(value, str)
    escaped = value.replace("\\", "\\\\").replace("#", "\\#")
    return escaped if '"' in value else f'"{escaped}"'


def aiinfra_mariadb_string(value: object) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise AnsibleFilterError("aiinfra_mariadb_string: needs a string without NUL characters")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class FilterModule:
    def filters(self) -> dict:
        return {
            "aiinfra_slurm_conf_problem": aiinfra_slurm_conf_problem,
            "aiinfra_slurm_conf_value": aiinfra_slurm_conf_value,
            "aiinfra_mariadb_string": aiinfra_mariadb_string,
        }
