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


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One argument per :func:`option` field of the settings class ``cls``."""
    for f, tp, _optional, several, meta in fields(cls):
        kw: dict = {"help": meta["help"]}
        if meta["choices"] is not None:
            kw["choices"] = list(meta["choices"])
        if meta["metavar"]:
            kw["metavar"] = meta["metavar"]
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


def parse(cls, argv=None, *, prog: str, description: str | None = None, **extra):
    """Parse ``argv`` into the settings ``cls`` (the ``python -m`` tools)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, cls)
    return from_args(cls, parser.parse_args(argv), **extra)
