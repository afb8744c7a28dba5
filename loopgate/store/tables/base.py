"""The declarative base every registry table derives from (its own module so table modules need not import
each other), and the ORM's refusal to change a record that is immutable once written."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase

from loopgate.errors import ImmutableError


class Base(DeclarativeBase):
    pass


def _refuse_update(mapper: Any, connection: Any, target: Any) -> None:
    raise ImmutableError(
        f"{type(target).__tablename__} records are immutable once written; create a new version instead"
    )


def immutable(cls: type[Base]) -> type[Base]:
    """Mark a table's rows as never changing once written (the ORM refuses an UPDATE; the ledger chain detects
    edits made behind its back)."""
    event.listen(cls, "before_update", _refuse_update)
    return cls
