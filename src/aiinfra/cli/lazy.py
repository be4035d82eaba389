"""Layer commands mounted on first use, so that ``aiinfra --help`` and ``aiinfra validate`` start fast.

Each layer mounts its commands from a module of its own (``register(app, load)``), and a layer
module brings its stage with it: the planner's tables, Ansible, the fabric renderers, Jinja2. The
root group imports such a module only when one of its commands runs, completes or prints its own
help. Until then the group knows each layer command by name and summary (the first paragraph of
its help, which ``aiinfra --help`` and shell completion list); tests/cli/test_startup.py holds
every summary to the help of the command it stands for.

A command line names at most one layer command, so a run imports at most one layer module (a name
the table does not know imports them all before it is found or refused as a typo);
``group.commands`` (a mapping) imports every layer it is asked for, so code that walks the command
tree sees the real commands.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, MutableMapping

from typer.core import TyperCommand, TyperGroup

if typing.TYPE_CHECKING:
    from typer import _click

#: (command, module that mounts it, summary), in the order ``aiinfra --help`` lists them
Layers = tuple[tuple[str, str, str], ...]
#: imports a layer module and returns the commands it mounts, by name
Mount = Callable[[str], "dict[str, _click.Command]"]


class Commands(MutableMapping[str, "_click.Command"]):
    """A group's commands: those made already, and layer commands whose module is not imported yet."""

    def __init__(self, made: dict[str, _click.Command], layers: Layers, mount: Mount) -> None:
        self._made = dict(made)
        self._pending = {name: module for name, module, _ in layers if name not in made}
        self._order = [*made, *self._pending]
        self._mount = mount

    def pending(self, name: str) -> bool:
        return name in self._pending

    def load(self, name: str) -> None:
        """Import the layer module of ``name`` (once); every command it mounts replaces its stand-in."""
        module = self._pending.get(name)
        if module is None:
            return
        for made, command in self._mount(module).items():
            self[made] = command
        missing = sorted(n for n, m in self._pending.items() if m == module)
        if missing:  # the layer table and the module disagree: a defect, not a user mistake
            raise LookupError(f"{module} does not mount {', '.join(missing)}")

    def load_all(self) -> None:
        for name in list(self._pending):
            self.load(name)

    def __getitem__(self, name: str) -> _click.Command:
        self.load(name)
        return self._made[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self._pending.pop(name, None)
        self._made[name] = command
        if name not in self._order:
            self._order.append(name)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._pending.pop(name, None)
        self._made.pop(name, None)
        self._order.remove(name)

    def __contains__(self, name: object) -> bool:
        return name in self._made or name in self._pending

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


class LayeredGroup(TyperGroup):
    """A Typer group whose layer commands (``layers``, ``mount``: see :func:`layered`) load on first use.

    Listing (``--help``, completion of a command name) shows a pending command's summary; resolving
    a command to run it, complete its options or print its help imports its layer."""

    layers: Layers = ()

    @staticmethod
    def mount(module: str) -> dict[str, _click.Command]:
        raise LookupError(f"no way to mount {module}: make the group class with layered()")

    def __init__(self, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        self.commands = Commands(dict(self.commands), self.layers, type(self).mount)
        self._summaries = {name: TyperCommand(name=name, help=summary) for name, _, summary in self.layers}

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        commands = typing.cast(Commands, self.commands)
        if commands.pending(cmd_name):
            return self._summaries[cmd_name]
        return commands.get(cmd_name)

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        commands = typing.cast(Commands, self.commands)
        if args and args[0] in commands:
            commands.load(args[0])
        elif args:  # not a name the table knows: a layer may mount it all the same (or it is a typo)
            commands.load_all()
        return super().resolve_command(ctx, args)


def layered(layers: Layers, mount: Mount) -> type[LayeredGroup]:
    """The group class (``typer.Typer(cls=...)``) of a root with these layer commands."""
    return type("Layered", (LayeredGroup,), {"layers": layers, "mount": staticmethod(mount)})
