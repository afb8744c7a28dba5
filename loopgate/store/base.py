"""The declarative base every registry table derives from (its own module so table modules need not import
each other)."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
