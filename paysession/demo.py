"""The demo's old import path: it lives in :mod:`paysession.cli.demo` now."""

from paysession.cli.demo import DEFAULT_CARTS, DEFAULT_DB, DEFAULT_WORKERS, DemoError, run

__all__ = ["DEFAULT_CARTS", "DEFAULT_DB", "DEFAULT_WORKERS", "DemoError", "run"]
