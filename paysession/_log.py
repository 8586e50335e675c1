"""paysession's log lines: the standard library's ``logging``, under ``paysession.*``.

- ``paysession.moves``: each committed move, at DEBUG;
- ``paysession.refusals``: each move refused (illegal, guarded, stale, a key reused), at
  INFO;
- ``paysession.anomalies``, ``paysession.hooks``, ``paysession.races``: what someone
  should look at, at WARNING: a provider report recorded as an anomaly, an after-hook
  that failed, a race lost and tried again.

A line is built from ids, triggers, statuses and error messages, never from a session's
``data`` or ``cart`` (which the error messages never hold either). Ids and messages are
shown with ``%r``, so that a newline in an id cannot forge a line of its own. Nothing is
printed unless the application configures logging.
"""

from __future__ import annotations

import logging

# A library's lines are the application's to show: without this handler, Python would
# print the warnings to stderr by itself when the application configures no logging.
logging.getLogger("paysession").addHandler(logging.NullHandler())

MOVES = logging.getLogger("paysession.moves")
REFUSALS = logging.getLogger("paysession.refusals")
ANOMALIES = logging.getLogger("paysession.anomalies")
HOOKS = logging.getLogger("paysession.hooks")
RACES = logging.getLogger("paysession.races")

__all__ = ["ANOMALIES", "HOOKS", "MOVES", "RACES", "REFUSALS"]
