"""The plain-text tables the verification tools print (coverage, mutation)."""
from __future__ import annotations


def text_table(rows: list[tuple[str, ...]]) -> str:
    """``rows`` (the first one the header) as columns padded to their widest
    cell, separated by `` | ``, with a ``-+-`` rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
