"""The reconciliation audit, composed of the checks each app registers (in its AppConfig.ready()):
the ledger against itself (credits), the jobs against the ledger (generation), the payments
against the ledger (billing). `manage.py check_ledger` and the hourly audit task run them all.

A registry here, in core, so no app needs another's checks: the apps register theirs, in
INSTALLED_APPS order, which is the order the report lists them in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from creditgate.core.snapshot import snapshot

logger = logging.getLogger(__name__)

# name -> a check: no arguments, returns its problems as sentences (empty: all is well).
_checks: dict[str, Callable[[], list[str]]] = {}


def check_register(name: str, check: Callable[[], list[str]]) -> None:
    """Add a check to the audit (once per name: a second ready() changes nothing)."""
    _checks.setdefault(name, check)


def checks_registered() -> list[str]:
    return list(_checks)


@snapshot()
def reconciliation_audit(*, log: bool = False) -> list[str]:
    """Every registered check's problems, all read in one snapshot of the database, so jobs and
    payments settling meanwhile are not reported as breaks."""
    problems = [problem for check in _checks.values() for problem in check()]
    if log:
        for problem in problems[:50]:
            logger.error("audit: %s", problem)
        logger.info("audit: %d problem(s)", len(problems))
    return problems
