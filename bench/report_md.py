"""Sections of bench/report.md that one tool owns between markers, so `make bench`, `make chaos`
and `make soak` each replace only their own part:

    <!-- chaos:begin -->
    ...
    <!-- chaos:end -->
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->\n.*?<!-- (?P=name):end -->\n?", re.DOTALL)


def marked(name: str, lines: list[str]) -> str:
    return f"<!-- {name}:begin -->\n" + "\n".join(lines).rstrip("\n") + f"\n<!-- {name}:end -->\n"


def write_section(path: Path, name: str, lines: list[str]) -> None:
    """Replace the section `name` in the file (or append it), leaving everything else as it is."""
    text = path.read_text() if path.exists() else ""
    section = marked(name, lines)
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->\n.*?<!-- {re.escape(name)}:end -->\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: section, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    path.write_text(text)


def sections(text: str) -> str:
    """Every marked section of a report, in order (what a tool that rewrites the rest keeps)."""
    return "".join(match.group(0).rstrip("\n") + "\n" for match in _SECTION.finditer(text))


def load_line(machine: dict) -> str:
    """The machine's load while figures were taken (it is shared: other work slows ours)."""
    start, end = machine.get("load_average_at_start"), machine.get("load_average_at_end")
    if not end:
        return ""
    at = f"{start[0]:.2f} at the start, " if start else ""
    return f"Load average (1 min) {at}{end[0]:.2f} at the end, on {machine.get('cores')} cores (a shared machine)."
