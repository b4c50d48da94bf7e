"""The declarative base shared by every model."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Base class of the ORM models; the schema itself comes from SQL migrations."""
