"""Text from outside shown safely: on a terminal, in a log line or in a page."""

from __future__ import annotations

import unicodedata


def printable(value: object) -> str:
    """``value`` as text safe for a terminal: control and format characters escaped.

    Actors, reasons and event ids come from webhooks: a newline would forge a row, an
    escape sequence would recolour the terminal, a bidi override would reorder it.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        char if char == " " or unicodedata.category(char)[0] not in "CZ" else _escaped(char)
        for char in text
    )


def abbreviated(value: object, longest: int = 60) -> str:
    """``repr(value)``, cut to ``longest`` characters (the last three ``...``): a field
    named in a message, however long the input that held it."""
    text = repr(value)
    return text if len(text) <= longest else text[: longest - 3] + "..."


def _escaped(char: str) -> str:
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


__all__ = ["abbreviated", "printable"]
