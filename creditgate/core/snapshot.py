"""One consistent view of the database for a read that spans several queries.

An audit compares tables (accounts against ledger sums against holds) with one query each. Under
READ COMMITTED, PostgreSQL's default, each query sees the commits made before it began, so a job
settling between two of them looks like a broken ledger ("held is 0 but its active holds total 3").
Inside `snapshot()` every query sees the same commits. Django sets isolation per connection, not per
transaction, hence the `SET TRANSACTION` here.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def snapshot() -> Iterator[None]:
    """Run the block (or, as `@snapshot()`, the function) in one read-only REPEATABLE READ
    transaction on PostgreSQL.

    Inside an open transaction (a caller's atomic block, a test's) the block joins it: the
    isolation of a transaction cannot change once it has run a query. SQLite needs nothing: a
    transaction there already reads one snapshot, and its writers are serialised.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
