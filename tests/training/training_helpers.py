"""Read rendered job files the way their consumers do: bash evaluates the scripts' arrays and exports."""

from __future__ import annotations

import re
import subprocess


def sbatch_options(script: str) -> dict[str, str]:
    """#SBATCH --key=value lines (value '' for flags)."""
    out = {}
    for line in script.splitlines():
        if m := re.match(r"#SBATCH --([a-z-]+)(?:=(.*))?$", line):
            out[m.group(1)] = m.group(2) or ""
    return out


def _block(script: str, start: str) -> str:
    lines = script.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(start))
    j = next(k for k in range(i, len(lines)) if lines[k] == ")")
    return "\n".join(lines[i:j + 1])


def shell_values(script: str) -> tuple[list[str], dict[str, str]]:
    """The ARGS array and every exported variable, as bash sees them."""
    exports = "\n".join(line for line in script.splitlines() if line.startswith("export ") and "$(" not in line)
    program = f"{exports}\n{_block(script, 'ARGS=(')}\nprintf '%s\\0' \"${{ARGS[@]}}\"\nprintf '\\1'\nenv -0\n"
    out = subprocess.run(["bash", "-c", program], capture_output=True, check=True, env={}).stdout.decode()
    args_part, env_part = out.split("\1", 1)
    args = args_part.split("\0")[:-1]
    env = dict(item.split("=", 1) for item in env_part.split("\0") if "=" in item)
    return args, env


def flag(args: list[str], name: str) -> str | None:
    """The value after ``name`` (None when absent); '' for a flag without a value."""
    if name not in args:
        return None
    i = args.index(name)
    return args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""


def function_source(script: str, name: str) -> str:
    lines = script.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"{name}()"))
    j = next(k for k in range(i, len(lines)) if lines[k] == "}")
    return "\n".join(lines[i:j + 1])
