"""Pages as terminal text, for `synth-ai man`."""

from __future__ import annotations

import textwrap

from synth_cli.manual.pages import MAN_SECTION, PROG, Page


# --------------------------------------------------------------------------- terminal text


def to_text(page: Page, width: int = 80) -> str:
    """A man-like plain-text rendering for `synth-ai man` (no roff needed)."""
    width = max(40, width)
    body = width - 7
    out = [f"{page.name.upper()}({MAN_SECTION})".ljust(width // 2) + f"{PROG} manual".rjust(width - width // 2), ""]
    for sec in page.sections:
        out.append(sec.title)
        terms = [len(b.term) for b in sec.blocks if b.kind == "item"]
        column = 4 + min(max(terms, default=0), 24) + 2
        previous = None
        for block in sec.blocks:
            if previous in ("para", "example") or (previous == "item" and block.kind != "item"):
                out.append("")
            previous = block.kind
            if block.kind == "para":
                out += textwrap.wrap(block.text, body, initial_indent="    ", subsequent_indent="    ",
                                     break_on_hyphens=False, break_long_words=False) or [""]
            elif block.kind == "pre":
                out += ["    " + line for line in block.text.splitlines()]
            elif block.kind == "item":
                if len(block.term) <= column - 6:
                    lines = textwrap.wrap(block.text, max(20, width - column), break_on_hyphens=False,
                                          break_long_words=False) or [""]
                    out.append(("    " + block.term).ljust(column) + lines[0])
                    out += [" " * column + line for line in lines[1:]]
                else:
                    out.append("    " + block.term)
                    out += textwrap.wrap(block.text, max(20, width - column), initial_indent=" " * column,
                                         subsequent_indent=" " * column, break_on_hyphens=False,
                                         break_long_words=False)
            elif block.kind == "example":
                out.append("    $ " + block.term)
                out += textwrap.wrap(block.text, body - 4, initial_indent="        ", subsequent_indent="        ",
                                     break_on_hyphens=False, break_long_words=False)
        out.append("")
    return "\n".join(out).rstrip() + "\n"
