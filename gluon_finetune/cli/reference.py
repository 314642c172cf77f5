"""The settings schema's documentation: a Markdown table of every flag and config key.

    python -m gluon_finetune.cli.reference docs/guide/cli.md

rewrites the table between the page's markers (a test checks it is current).
"""
from __future__ import annotations

import sys

from .declarations import flag_of, options
from .schema import MODEL, Option

__all__ = ["reference", "update_reference", "BEGIN", "END"]


def _spelled(option: Option) -> str:
    """How the documentation writes the flag (or the positional argument)."""
    if option.action == "positional":
        return option.name.upper()
    flag = flag_of(option)
    if flag is None:
        return ""
    if option.action == "bool":
        return f"{flag}, --no-{flag[2:]}"
    if option.action == "store_true":
        return flag
    return f"{flag} {option.metavar or option.kind.metavar or option.name.upper()}"


def _per_command(option: Option, text) -> str:
    """``text(command)`` once, or per command where the commands differ."""
    said = {command: text(command) for command in option.commands}
    if len(set(said.values())) == 1:
        return next(iter(said.values())) or ""
    return "; ".join(f"{command}: {value}" for command, value in said.items() if value)


def reference() -> str:
    """The Markdown table of every setting: its flag, config key, value, default,
    the commands that take the flag, and its help (``docs/guide/cli.md``)."""
    rows = ["| flag | config key | value | default | commands | |",
            "|---|---|---|---|---|---|"]
    for o in options():
        cells = [f"`{_spelled(o)}`" if _spelled(o) else "", f"`{o.name}`" if o.config else "",
                 o.kind.expected, _per_command(o, o.shown_for),
                 "all" if o.commands == MODEL else ", ".join(o.commands),
                 _per_command(o, o.help_for)]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


BEGIN, END = "<!-- settings reference: begin -->", "<!-- settings reference: end -->"


def update_reference(path: str) -> None:
    """Rewrite the reference between ``BEGIN`` and ``END`` in the Markdown page ``path``:
    ``python -m gluon_finetune.cli.schema docs/guide/cli.md``."""
    with open(path, encoding="utf-8") as f:
        head, rest = f.read().split(BEGIN)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{reference()}{END}{rest.split(END)[1]}")


if __name__ == "__main__":
    update_reference(sys.argv[1])
