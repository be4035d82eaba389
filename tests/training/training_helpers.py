"""Read rendered job files the way their consumers do: bash evaluates the scripts' arrays and exports."""

from __future__ import annotations

import re
import shlex
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


def shell_assignments(script: str, names: list[str]) -> dict[str, str]:
    """Top-level ``NAME=value`` assignments of ``names`` (no command substitution), as bash sees them."""
    lines = [line for line in script.splitlines()
             if any(line.startswith(f"{n}=") for n in names) and "$(" not in line]
    program = "\n".join(lines) + "\n" + "".join(f"printf '%s\\0' \"${{{n}-}}\"\n" for n in names)
    out = subprocess.run(["bash", "-c", program], capture_output=True, check=True, env={}).stdout.decode()
    return dict(zip(names, out.split("\0")[:-1], strict=True))


def command_words(script: str, command: str) -> list[str]:
    """The words of the first command line (continuations joined) that starts with ``command``
    (e.g. ``srun``, ``torchrun``), split as the shell splits them, expansions left unexpanded."""
    text = script.replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"{command} "))
    return shlex.split(line)


def command_options(words: list[str]) -> dict[str, str]:
    """``--key=value`` options among ``words``."""
    return dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)


def default_program(script: str) -> list[str]:
    """The PROGRAM array of a batch script when AIINFRA_PROGRAM is not set (what each task runs)."""
    line = next(line for line in script.splitlines() if line.startswith("read -r -a PROGRAM"))
    out = subprocess.run(["bash", "-c", f"{line}\nprintf '%s\\0' \"${{PROGRAM[@]}}\"\n"], capture_output=True,
                         check=True, env={}).stdout.decode()
    return out.split("\0")[:-1]
