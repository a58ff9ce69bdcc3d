"""The generated tables of docs/ppu.md, from the instruction set's one table.

    python -m spikeloop.ppu.docs --write-docs docs/ppu.md

rewrites every ``<!-- begin NAME -->...<!-- end NAME -->`` section of the
document with the table :data:`DOC_SECTIONS` names; a test checks that the
document holds exactly these tables.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base.isa import FIELDS, FORMATS, IMM_KINDS, ISA
from spikeloop.base.settings import Command, option, tool_main


def isa_markdown() -> str:
    """The encoding table of docs/ppu.md (generated; tests/test_ppu_isa.py
    checks that the document holds exactly this)."""
    lines = ["| mnemonic | syntax | format | encoding | immediate | cycles | semantics |",
             "|---|---|---|---|---|---|---|"]
    for ins in ISA:
        imm = "-"
        if ins.imm:
            lo, hi, how = IMM_KINDS[ins.imm]
            imm = f"{lo}..{hi} ({how})"
        lines.append(f"| `{ins.mnemonic}` | `{ins.syntax()}` | {ins.fmt} | "
                     f"{ins.encoding_text()} | {imm} | {ins.cycle_text()} | "
                     f"{ins.semantics.replace('|', '/')} |")
    return "\n".join(lines)


def formats_markdown() -> str:
    lines = ["| format | operands -> fields |", "|---|---|"]
    for f in FORMATS.values():
        ops = ", ".join(f"{name} -> {fld}" for name, _, fld in f.operands) or "(none)"
        lines.append(f"| {f.name} | {ops} |")
    return "\n".join(lines)


def fields_markdown() -> str:
    lines = ["| field | bits |", "|---|---|"]
    for name, (lsb, width) in FIELDS.items():
        lines.append(f"| {name} | [{lsb + width - 1}:{lsb}] |")
    return "\n".join(lines)



#: generated sections of docs/ppu.md: marker name -> generator
DOC_SECTIONS = {"isa": isa_markdown, "formats": formats_markdown, "fields": fields_markdown}


def render_docs(text: str) -> str:
    """``text`` with every ``<!-- begin NAME -->...<!-- end NAME -->`` section
    replaced by the generated table."""
    for name, gen in DOC_SECTIONS.items():
        begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"markers {begin} / {end} missing")
        text = text[:i + len(begin)] + "\n" + gen() + "\n" + text[j:]
    return text


@dataclass
class DocsSettings:
    write_docs: str = option(required=True, metavar="PATH",
                             help="the document whose generated tables are rewritten "
                                  "(docs/ppu.md)")


def write_docs(s: DocsSettings) -> int:
    path = Path(s.write_docs)
    path.write_text(render_docs(path.read_text()))
    print(f"wrote the ISA tables into {path}")
    return 0


COMMAND = Command((), DocsSettings, write_docs, "rewrite the generated tables of docs/ppu.md",
                  description=__doc__)

if __name__ == "__main__":
    sys.exit(tool_main("python -m spikeloop.ppu.docs", COMMAND))
