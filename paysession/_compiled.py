"""Functions built from source at import, registered so that tracebacks show their lines.

The few hot paths that fill a frozen object's slots one by one are generated with
``exec`` (a loop with ``getattr`` costs several times as much). Their source is put in
``linecache`` under a name of its own, as attrs does for the methods it writes, so a
traceback or a debugger shows the generated line instead of ``<string>``.
"""

from __future__ import annotations

import linecache
from typing import Any


def compile_function(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    """Run the source ``lines`` in ``namespace`` and return the function ``name`` it defines."""
    source = "\n".join(lines) + "\n"
    filename = f"<paysession generated {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


__all__ = ["compile_function"]
