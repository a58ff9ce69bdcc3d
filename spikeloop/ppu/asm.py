"""Assembler and disassembler of the plasticity processor (PPU).

The instruction set is the table of spikeloop/base/isa.py (docs/ppu.md shows
it); this module only reads text.  Syntax, one instruction per line::

    # comments start with '#' or ';'
    .equ STEP, 4                 # a constant (expressions: + - * // % << >> & | ^ ~ ( ))
    start:  addi r1, r0, ROWS*ROW_CHUNKS - 1   # symbols of the ChipConfig (see below)
    loop:   vlw v1, 0(r1)        # a label may share its line with an instruction
            vadds.h v2, v2, v1   # vector lane size: .b (8-bit lanes, the default) or .h
            addi r1, r1, -1
            bge r1, r0, loop     # branch targets: labels or instruction addresses
            halt

Registers ``r0``..``r15`` (``r0`` is 0), ``v0``..``v7``; memory operands
``imm(rs1)``; ``csrr`` takes ``cycle``, ``adc_count`` or ``time``.
Pseudo-instructions: ``nop``, ``mv rd, rs``, ``li rd, imm32`` (one or two
words), ``j target``, ``vmov vd, va``; ``.word expr`` places a raw word.

With a ChipConfig, the geometry's constants are predefined
(:meth:`spikeloop.base.isa.PpuGeometry.symbols`: ``ROWS``, ``COLS``,
``ROW_CHUNKS``, ``ROW_CHUNK_BITS``, ``ADC_CHUNKS``, ``LANES_B``, ...), so one
source assembles for every preset.

Errors name the line, the instruction and what is wrong, e.g.
``line 7: `vaddS v1, v2` : unknown mnemonic 'vaddS'; did you mean 'vadds'?``;
every error of a source is reported at once (:class:`AsmError`).
"""
from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import (
    BY_MNEMONIC,
    CSRS,
    N_REGS,
    N_VREGS,
    XMASK,
    PpuGeometry,
    disassemble_word,
    encode,
    imm_range,
)

__all__ = ["AsmError", "Program", "assemble", "disassemble", "PSEUDO"]

#: pseudo-instructions: name -> operand syntax
PSEUDO = {"nop": "", "mv": "rd, rs", "li": "rd, imm32", "j": "target", "vmov": "vd, va"}
SIZES = {"b": 0, "h": 1}


class AsmError(ValueError):
    """One or more lines of a source do not assemble; ``errors`` lists each
    message (``line N: `text` : what is wrong``)."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class Program:
    words: list[int]
    #: source line number (1-based) of each word
    lines: list[int]
    labels: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)

    def listing(self) -> str:
        return "\n".join(f"{pc:5d}  {w:08x}  {disassemble_word(w, pc)}"
                         for pc, w in enumerate(self.words))


class _LineError(Exception):
    pass


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b,
           ast.Mod: lambda a, b: a % b, ast.LShift: lambda a, b: a << b,
           ast.RShift: lambda a, b: a >> b, ast.BitOr: lambda a, b: a | b,
           ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b}
_UNOPS = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a, ast.Invert: lambda a: ~a}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _suggest(name: str, choices) -> str:
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def _eval(text: str, symbols: dict[str, int]) -> int:
    text = text.strip()
    if not text:
        raise _LineError("missing value")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _LineError(f"cannot read {text!r} as a number or expression") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in symbols:
                return symbols[node.id]
            raise _LineError(f"unknown symbol '{node.id}'{_suggest(node.id, symbols)}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
                raise _LineError(f"division by zero in {text!r}")
            if isinstance(node.op, (ast.LShift, ast.RShift)) and not 0 <= right < 64:
                raise _LineError(f"shift by {right} in {text!r}; allowed 0..63")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        raise _LineError(f"cannot read {text!r} as a number or expression")

    return ev(tree)


def _reg(text: str, what: str) -> int:
    t = text.strip()
    m = re.fullmatch(r"r(\d+)", t)
    if m and int(m.group(1)) < N_REGS:
        return int(m.group(1))
    raise _LineError(f"{what}: expected a scalar register r0..r{N_REGS - 1}, got '{t}'")


def _vreg(text: str, what: str) -> int:
    t = text.strip()
    m = re.fullmatch(r"v(\d+)", t)
    if m and int(m.group(1)) < N_VREGS:
        return int(m.group(1))
    raise _LineError(f"{what}: expected a vector register v0..v{N_VREGS - 1}, got '{t}'")


def _check_range(value: int, kind: str, what: str) -> int:
    lo, hi = imm_range(kind)
    if not lo <= value <= hi:
        raise _LineError(f"{what} {value} out of range {lo}..{hi}")
    return value


@dataclass
class _Stmt:
    line: int
    text: str           # the instruction as written (for messages)
    mnemonic: str
    size: int | None    # lane size from the suffix, None when absent
    operands: list[str]
    addr: int
    n_words: int


def _split_operands(rest: str) -> list[str]:
    rest = rest.strip()
    return [o.strip() for o in rest.split(",")] if rest else []


def _count_error(name: str, syntax: str, got: int) -> _LineError:
    ops = [s for s in syntax.split(", ") if s]
    return _LineError(f"{name} takes {len(ops)} operand{'s' * (len(ops) != 1)}"
                      f"{f' ({syntax})' if ops else ''}, got {got}")


def assemble(source: str, cfg: ChipConfig | None = None, *, imem_words: int | None = None,
             symbols: dict[str, int] | None = None) -> Program:
    """Assemble ``source``; with ``cfg`` the geometry's constants are symbols and
    the program must fit the instruction memory (``imem_words``, default the
    geometry's).  Raises :class:`AsmError` listing every bad line."""
    syms: dict[str, int] = {}
    if cfg is not None:
        geom = PpuGeometry(cfg) if imem_words is None else PpuGeometry(
            cfg, imem_words=imem_words)
        syms.update(geom.symbols())
        imem_words = geom.imem_words
    syms.update(symbols or {})
    errors: list[str] = []
    stmts: list[_Stmt] = []
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    known = sorted(set(BY_MNEMONIC) | set(PSEUDO) | {".equ", ".word"})
    addr = 0
    forward_li: set[int] = set()

    # -- pass 1: labels, constants, sizes ---------------------------------------------
    for n, raw in enumerate(source.splitlines(), start=1):
        code = re.split(r"[#;]", raw, maxsplit=1)[0].strip()
        shown = code
        try:
            while True:
                m = re.match(r"([A-Za-z_.][\w.]*)\s*:(.*)$", code)
                if not m:
                    break
                name, code = m.group(1), m.group(2).strip()
                if not _NAME.match(name):
                    raise _LineError(f"bad label name '{name}'")
                if name in labels or name in syms:
                    where = f" on line {label_line[name]}" if name in label_line else \
                        " (a predefined symbol)"
                    raise _LineError(f"label '{name}' already defined{where}")
                labels[name], label_line[name] = addr, n
                syms[name] = addr
            if not code:
                continue
            parts = code.split(None, 1)
            word0, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if word0 == ".equ":
                ops = _split_operands(rest)
                if len(ops) != 2 or not _NAME.match(ops[0]):
                    raise _LineError(".equ takes a name and a value: .equ NAME, expr")
                if ops[0] in syms:
                    raise _LineError(f"symbol '{ops[0]}' already defined")
                syms[ops[0]] = _eval(ops[1], syms)
                continue
            base, _, suffix = word0.partition(".")
            if word0 == ".word":
                mnemonic, size = ".word", None
            elif base in BY_MNEMONIC or base in PSEUDO:
                mnemonic = base
                size = None
                if _:
                    if suffix not in SIZES:
                        raise _LineError(f"unknown lane size '.{suffix}' in '{word0}'; "
                                         "allowed: .b (8-bit lanes), .h (16-bit lanes)")
                    if base in PSEUDO or not BY_MNEMONIC[base].sized:
                        raise _LineError(f"{base} takes no lane size suffix ('.{suffix}')")
                    size = SIZES[suffix]
            else:
                raise _LineError(f"unknown mnemonic '{word0}'{_suggest(word0, known)}")
            ops = _split_operands(rest)
            n_words = 1
            if mnemonic == "li":
                if len(ops) != 2:
                    raise _count_error("li", PSEUDO["li"], len(ops))
                try:
                    v = _eval(ops[1], syms)
                    n_words = 1 if -32768 <= v <= 32767 else 2
                except _LineError:
                    n_words = 2          # a label defined further down: lui + ori
                    forward_li.add(len(stmts))
            stmts.append(_Stmt(n, shown, mnemonic, size, ops, addr, n_words))
            addr += n_words
        except _LineError as e:
            errors.append(f"line {n}: `{shown}` : {e}")

    # -- pass 2: encode ---------------------------------------------------------------
    words: list[int] = []
    lines: list[int] = []
    for k, st in enumerate(stmts):
        try:
            out = _encode_stmt(st, syms, force_two=k in forward_li)
            assert len(out) == st.n_words
            words += out
            lines += [st.line] * len(out)
        except _LineError as e:
            errors.append(f"line {st.line}: `{st.text}` : {e}")
            words += [0] * st.n_words
            lines += [st.line] * st.n_words
    if imem_words is not None and len(words) > imem_words:
        errors.append(f"line {lines[-1]}: program of {len(words)} words does not fit the "
                      f"instruction memory of {imem_words} words")
    if errors:
        errors.sort(key=lambda s: int(s.split(":", 1)[0].split()[1]))
        raise AsmError(errors)
    return Program(words, lines, labels)


def _encode_stmt(st: _Stmt, syms: dict[str, int], force_two: bool = False) -> list[int]:
    mn, ops = st.mnemonic, st.operands
    if mn == ".word":
        if len(ops) != 1:
            raise _count_error(".word", "value", len(ops))
        v = _eval(ops[0], syms)
        if not -(1 << 31) <= v <= XMASK:
            raise _LineError(f"word {v} out of range {-(1 << 31)}..{XMASK}")
        return [v & XMASK]
    if mn in PSEUDO:
        want = [s for s in PSEUDO[mn].split(", ") if s]
        if len(ops) != len(want):
            raise _count_error(mn, PSEUDO[mn], len(ops))
        if mn == "nop":
            return [encode("addi")]
        if mn == "mv":
            return [encode("addi", a=_reg(ops[0], "rd"), b=_reg(ops[1], "rs"))]
        if mn == "j":
            return [encode("jal", imm=_target(ops[0], st.addr, syms))]
        if mn == "vmov":
            va = _vreg(ops[1], "va")
            return [encode("vor", a=_vreg(ops[0], "vd"), b=va, c=va)]
        # li
        rd = _reg(ops[0], "rd")
        v = _eval(ops[1], syms)
        if not -(1 << 31) <= v <= XMASK:
            raise _LineError(f"immediate {v} out of range {-(1 << 31)}..{XMASK}")
        if -32768 <= v <= 32767 and not force_two:
            return [encode("addi", a=rd, imm=v)]
        v &= XMASK
        return [encode("lui", a=rd, imm=v >> 16), encode("ori", a=rd, b=rd, imm=v & 0xFFFF)]

    ins = BY_MNEMONIC[mn]
    fmt = ins.format
    if len(ops) != len(fmt.operands):
        raise _count_error(mn, ", ".join(o[0] for o in fmt.operands), len(ops))
    fields: dict[str, int] = {}
    for text, (name, kind, fld) in zip(ops, fmt.operands, strict=True):
        if kind == "r":
            fields[fld] = _reg(text, name)
        elif kind == "v":
            fields[fld] = _vreg(text, name)
        elif kind == "mem":
            m = re.fullmatch(r"(.*)\(\s*([^()]*?)\s*\)", text)
            if not m:
                raise _LineError(f"{name}: expected an address imm(rs1), got '{text}'")
            fields[fld] = _reg(m.group(2), "rs1")
            off = _eval(m.group(1), syms) if m.group(1).strip() else 0
            fields["imm"] = _check_range(off, ins.imm, "offset")
        elif kind == "target":
            fields["imm"] = _target(text, st.addr, syms)
        else:  # immediate
            if ins.imm == "csr" and text in CSRS:
                value = CSRS[text]
            else:
                try:
                    value = _eval(text, syms if ins.imm != "csr" else {**syms, **CSRS})
                except _LineError as e:
                    if ins.imm == "csr":
                        raise _LineError(f"{e}; status registers: "
                                         f"{', '.join(CSRS)}") from None
                    raise
            fields[fld] = _check_range(value, ins.imm, "immediate" if fld == "imm" else
                                       "shift")
    return [encode(mn, size=st.size or 0, **fields)]


def _target(text: str, pc: int, syms: dict[str, int]) -> int:
    target = _eval(text, syms)
    off = target - pc
    lo, hi = imm_range("s16")
    if not lo <= off <= hi:
        raise _LineError(f"branch target {target} is {off} instructions away; "
                         f"allowed {lo}..{hi}")
    return off


def disassemble(words, base: int = 0) -> str:
    """The words as assembly text that :func:`assemble` turns back into the same
    words (one instruction per line; undefined words as ``.word``)."""
    return "\n".join(disassemble_word(w, base + i) for i, w in enumerate(words))
