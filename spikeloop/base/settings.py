"""A command's settings: one dataclass whose fields are its arguments.

Every command of ``spikeloop`` (and of the ``python -m`` tools) owns a settings
dataclass and a ``run(settings)``; its command-line arguments are derived from
the fields, so the two never drift apart::

    @dataclass
    class ExportSettings:
        preset: str = option(required=True, choices=PRESET_NAMES, help="design variant")
        out: str = option(required=True, help="output directory")
        timeout: int = option(1800, help="seconds per yosys run")

    add_arguments(parser, ExportSettings)       # --preset, --out, --timeout
    settings = from_args(ExportSettings, parser.parse_args(argv))

A field's type gives the argument's type: ``int``, ``float``, ``str``, ``bool``
(a switch), ``X | None`` (optional), ``tuple[X, ...]`` (one or more values).
:func:`option` adds the help text, the choices, a positional argument, another
flag name (``flag="--chip"``; a switch whose default is True is written as its
negation, e.g. ``flag="--no-progress"``), ``repeat=True`` for an option given
once per value.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import MISSING

_KEY = "spikeloop.option"


def option(default=MISSING, *, help: str, choices=None, positional: bool = False,
           required: bool = False, flag: str | None = None, metavar: str | None = None,
           repeat: bool = False):
    """A dataclass field that is also a command-line argument."""
    meta = {_KEY: {"help": help, "choices": choices, "positional": positional,
                   "required": required, "flag": flag, "metavar": metavar,
                   "repeat": repeat}}
    if isinstance(default, list | dict | set):
        raise TypeError("option(): use a tuple for a default of several values")
    if required or positional:
        if default is not MISSING:
            raise TypeError("option(): a required or positional argument has no default")
        return dataclasses.field(metadata=meta)     # (declared before the defaults)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp):
    """(element type, optional, several) of a field's annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"unsupported settings type {tp!r}")
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return args[0], optional, True
    return tp, optional, False


def fields(cls) -> list[tuple[dataclasses.Field, type, bool, bool, dict]]:
    """The command-line fields of ``cls``: (field, element type, optional,
    several, option metadata); fields without :func:`option` are not arguments."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        tp, optional, several = _base_type(hints[f.name])
        out.append((f, tp, optional, several, meta))
    return out


def _choice(name: str, choices, tp):
    """An argparse ``type`` that refuses a value outside ``choices`` the way every
    check of the project does: ``name = value; allowed: ...``."""
    allowed = [str(c) for c in choices]

    def convert(text: str):
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"{name} = {text!r}; allowed: {', '.join(allowed)}")
        return tp(text)

    convert.__name__ = name
    return convert


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One argument per :func:`option` field of the settings class ``cls``."""
    for f, tp, _optional, several, meta in fields(cls):
        kw: dict = {"help": meta["help"]}
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if tp is bool and not several:
            if meta["positional"] or meta["required"]:
                raise TypeError(f"{cls.__name__}.{f.name}: a switch cannot be required")
            negated = f.default is True
            if negated and not flag.startswith("--no-"):
                raise TypeError(f"{cls.__name__}.{f.name}: a switch on by default is "
                                "written --no-NAME")
            parser.add_argument(flag, dest=f.name, default=f.default,
                                action="store_false" if negated else "store_true", **kw)
            continue
        kw["type"] = tp
        if meta["choices"] is not None:
            kw["type"] = _choice(f.name, meta["choices"], tp)
            kw["metavar"] = "{" + ",".join(str(c) for c in meta["choices"]) + "}"
        if meta["metavar"]:
            kw["metavar"] = meta["metavar"]
        elif meta["flag"] and not meta["positional"] and "metavar" not in kw:
            kw["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        if several:
            if meta["repeat"]:
                kw["action"] = "append"
            else:
                kw["nargs"] = "+"
        if meta["positional"]:
            parser.add_argument(f.name, **kw)
            continue
        if meta["required"]:
            kw["required"] = True
        else:
            kw["default"] = (list(f.default) if several and f.default is not None
                             and not meta["repeat"] else f.default)
            if several and meta["repeat"]:
                kw["default"] = None
        parser.add_argument(flag, dest=f.name, **kw)


def from_args(cls, args: argparse.Namespace, **extra):
    """The settings ``cls`` of parsed arguments (``extra`` fills fields that are
    not arguments)."""
    values = dict(extra)
    for f, _tp, _optional, several, _meta in fields(cls):
        v = getattr(args, f.name)
        if several:
            v = tuple(v) if v is not None else f.default
        values[f.name] = v
    return cls(**values)


# -- commands: settings, what runs them, and one dispatcher ---------------------------

@dataclasses.dataclass(frozen=True)
class Command:
    """One command: its words on the command line (``("rtl", "export")``), its
    settings dataclass, the ``run(settings)`` that carries it out (returning an
    exit status, or anything else for 0), and its help."""

    words: tuple[str, ...]
    settings: type
    run: typing.Callable
    help: str
    description: str = ""
    #: refusals of the user's input besides ValueError (exit status 2)
    user_errors: tuple[type[BaseException], ...] = ()
    #: printed on Ctrl-C (``{settings}`` is replaced by the settings), e.g. how to resume
    on_interrupt: str = ""


def build_parser(prog: str, description: str, commands,
                 groups_help: dict[tuple[str, ...], str] | None = None) -> argparse.ArgumentParser:
    """A parser with one (nested) subcommand per :class:`Command`; ``groups_help``
    names what the words that lead to several commands stand for."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {}
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {(): parser}
    helps = dict(groups_help or {})
    for cmd in commands:
        for k in range(len(cmd.words)):
            head = cmd.words[:k]
            if head not in groups:
                groups[head] = parsers[head].add_subparsers(
                    dest="_".join(("command",) + head), required=True, metavar="COMMAND")
            words = cmd.words[:k + 1]
            if words in parsers:
                continue
            last = k == len(cmd.words) - 1
            p = groups[head].add_parser(
                words[-1], help=cmd.help if last else helps.get(words, ""),
                description=(cmd.description or cmd.help) if last else None,
                formatter_class=argparse.RawDescriptionHelpFormatter)
            parsers[words] = p
            if last:
                add_arguments(p, cmd.settings)
                p.set_defaults(_command=cmd)
    return parser


def main(prog: str, description: str, commands, argv=None,
         groups_help: dict[tuple[str, ...], str] | None = None) -> int:
    """Parse ``argv``, run the command it names and return its exit status (see
    :func:`execute`)."""
    try:
        args = build_parser(prog, description, commands, groups_help).parse_args(argv)
    except SystemExit as e:          # --help (0) or a refused argument (2, said by argparse)
        return e.code if isinstance(e.code, int) else 2
    return execute(" ".join((prog,) + args._command.words), args._command, args)


def tool_main(prog: str, command: Command, argv=None) -> int:
    """:func:`main` for a tool of one command (``python -m ...``)."""
    parser = argparse.ArgumentParser(prog=prog, description=command.description or command.help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, command.settings)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    return execute(prog, command, args)


def execute(name: str, cmd: Command, args: argparse.Namespace) -> int:
    """Run ``cmd`` on the parsed ``args``.  A refused input (ValueError, or one of
    the command's ``user_errors``) is one line on stderr and status 2; a failed
    external tool (RuntimeError) status 1; Ctrl-C status 130."""
    prog = name.split()[0]
    settings = None
    try:
        settings = from_args(cmd.settings, args)
        status = cmd.run(settings)
    except KeyboardInterrupt:
        hint = cmd.on_interrupt.format(settings=settings) if cmd.on_interrupt else ""
        print(f"{name}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130
    except (ValueError, *cmd.user_errors) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:        # a tool run failed (yosys, Verilator): says where its log is
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
