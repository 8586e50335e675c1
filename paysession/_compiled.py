"""Functions built from source at import, registered so that tracebacks show their lines.

The few hot paths that fill a frozen object's slots one by one are generated with
``exec`` (a loop with ``getattr`` costs several times as much). Their source is put in
``linecache`` under a name of its own, as attrs does for the methods it writes, so a
traceback or a debugger shows the generated line instead of ``<string>``.
"""

from __future__ import annotations

import linecache
from collections.abc import Sequence
from typing import Any


def compile_function(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    """Run the source ``lines`` in ``namespace`` and return the function ``name`` it defines."""
    source = "\n".join(lines) + "\n"
    filename = f"<paysession generated {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def slot_filler(cls: type, names: Sequence[str], name: str) -> Any:
    """A function ``name(*values)`` that returns a new ``cls`` with the slots ``names``
    filled in that order, straight through their descriptors.

    For the frozen classes a move builds on every call, from values already checked:
    attrs' frozen ``__init__`` writes each slot through ``object.__setattr__``, which
    looks the descriptor up again every time.
    """
    lines = [f"def {name}({', '.join(names)}):", "    new = _new(cls)"]
    lines += [f"    _set_{field}(new, {field})" for field in names]
    lines.append("    return new")
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "cls": cls,
        **{f"_set_{field}": cls.__dict__[field].__set__ for field in names},
    }
    return compile_function(name, lines, namespace)


__all__ = ["compile_function", "slot_filler"]
