"""The one transaction boundary of a web request: services flush, the edge commits, here.

The rule: a service takes a session, flushes what it writes and never commits
(nor rolls back); the view that called it commits through ``transaction()`` or
``@committed``, once, after the last service call whose writes it keeps. If the
block raises (a refusal, a failed flush or commit), its writes are rolled back
and the exception goes on to the error handlers, which answer it. A view that
only reads commits nothing (chargeapp/app.py ends its read transaction).

The one exception is ``booking.book_slot``: it races other requests for a slot
through the database's unique indexes, so it commits and rolls back itself
inside its retry loop (a loser retries the next free charger in a fresh
transaction). A view that calls it commits nothing after it. Outside requests
the other edges commit the same way: the bridge's worker (mqtt_bridge/worker.py:
a transaction per batch, a message retried alone, each periodic pass under its
lease and the lease's release) and the command line (chargeapp/commands.py);
``rollups.roll_up`` commits only through the ``commit`` its caller passes, to
keep a long recompute in weekly transactions.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import wraps
from typing import Callable, Iterator

from sqlalchemy.orm import Session

from chargeapp.db import db
from chargeapp.services.common import commit_and_keep


@contextmanager
def transaction(keep: bool = False) -> Iterator[Session]:
    """Commit what the block wrote when it ends; roll it back if the block (or the commit) raises, and re-raise.

    ``keep``: commit without expiring the session's rows (``commit_and_keep``), for an answer made of
    the rows just written.
    """
    session = db.session
    try:
        yield session
        if keep:
            commit_and_keep(session)
        else:
            session.commit()
    except Exception:
        session.rollback()
        raise


def committed(view: Callable | None = None, *, keep: bool = False):
    """A view whose transaction commits when it returns, before its answer is serialised (``@committed`` or
    ``@committed(keep=True)``); put it nearest the function, under flask-smorest's decorators."""
    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args, **kwargs):
            with transaction(keep):
                return fn(*args, **kwargs)
        return wrapper
    return decorate(view) if view is not None else decorate
