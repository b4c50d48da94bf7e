"""ORM models mirroring the SQL schema in ``sql/postgis/migrations`` (never ``create_all``)."""

from geoserver.database.models.base import Base
from geoserver.database.models.region import Region

__all__ = ["Base", "Region"]
