"""Base data (基础数据库) over HTTP: list, read, create, update, delete and export each kind.

Eight kinds share one set of handlers, built per kind by ``kind_router`` from the service's
KindSpec and its create/update functions. Personal fields are masked; ``?reveal=true`` shows
them to cleared roles and writes a ``read_sensitive`` audit row per object in the same
transaction. Every write is audited with before/after (masked); exports are watermarked,
audited and stream through their own read transaction.
"""

# No ``from __future__ import annotations`` here: the handlers are built inside a factory,
# and FastAPI must resolve their annotations (per-kind models) from the closure at def time.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api.deps import AuditContextDep, CryptoDep, EngineDep, SessionDep, require, stream_rows
from api.exports import FORMATS, MEDIA, export_response
from api.schemas.common import NO_NUL, Id, Version, check_storable, parse_bbox
from api.schemas.objects import (
    GEOJSON_PAGE_SCHEMA,
    FilterQuery,
    page_model,
    query_models,
    record_model,
    saved_model,
)
from geoserver.database.models.objects import (
    BuildingCategory,
    ComponentStatus,
    CreditGrade,
    PersonType,
    ResidenceUsage,
    RiskLevel,
)
from geoserver.domain.documents import DocumentType
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import buildings, enterprises, persons, places
from geoserver.services.audit import AuditContext, audit
from geoserver.services.objects import (
    ListFilters,
    Page,
    Record,
    RevealHook,
    Saved,
    delete_object,
    get_object,
    iter_rows,
    list_objects,
    spec_for,
)

#: What the service's create/update functions look like (crypto only for some kinds).
Writer = Callable[..., Saved]


@dataclass(frozen=True)
class KindRoutes:
    """How one kind of base object is exposed: its URL, models, writers and filter types."""

    kind: str
    path: str
    create_model: type[BaseModel]
    update_model: type[BaseModel]
    create: Writer
    update: Writer
    #: Personal fields the record carries (masked unless revealed).
    personal: tuple[str, ...] = ()
    needs_crypto: bool = False
    category: Any = str
    status: Any = str

    def create_with(self, session: Session, actor: Principal, crypto: PersonalDataCrypto,
                    data: BaseModel) -> Saved:
        """Call the kind's create service."""
        extra = {"crypto": crypto} if self.needs_crypto else {}
        return self.create(session, actor=actor, data=data, **extra)

    def update_with(self, session: Session, actor: Principal, crypto: PersonalDataCrypto,
                    object_id: int, data: BaseModel) -> Saved:
        """Call the kind's update service (its id keyword is ``<kind>_id``)."""
        extra: dict[str, Any] = {"crypto": crypto} if self.needs_crypto else {}
        extra[f"{self.kind}_id"] = object_id
        return self.update(session, actor=actor, data=data, **extra)


KINDS = (
    KindRoutes("building", "buildings", buildings.BuildingCreate, buildings.BuildingUpdate,
               buildings.create_building, buildings.update_building, category=BuildingCategory),
    KindRoutes("residence", "residences", buildings.ResidenceCreate, buildings.ResidenceUpdate,
               buildings.create_residence, buildings.update_residence, category=ResidenceUsage),
    KindRoutes("household", "households", buildings.HouseholdCreate, buildings.HouseholdUpdate,
               buildings.create_household, buildings.update_household),
    KindRoutes("person", "persons", persons.PersonCreate, persons.PersonUpdate,
               persons.create_person, persons.update_person, personal=("document_number", "phone"),
               needs_crypto=True, category=PersonType),
    KindRoutes("organization", "organizations", places.OrganizationCreate,
               places.OrganizationUpdate, places.create_organization, places.update_organization,
               category=places.OrganizationCategory),
    KindRoutes("key_place", "key-places", places.KeyPlaceCreate, places.KeyPlaceUpdate,
               places.create_key_place, places.update_key_place,
               personal=("contact_name", "contact_phone"), needs_crypto=True,
               category=places.KeyPlaceCategory, status=RiskLevel),
    KindRoutes("city_component", "city-components", places.CityComponentCreate,
               places.CityComponentUpdate, places.create_city_component,
               places.update_city_component, category=places.ComponentCategory,
               status=ComponentStatus),
    KindRoutes("enterprise", "enterprises", enterprises.EnterpriseCreate,
               enterprises.EnterpriseUpdate, enterprises.create_enterprise,
               enterprises.update_enterprise, personal=("legal_representative",),
               status=CreditGrade),
)

#: One record model per kind, shared by every endpoint that returns that kind.
RECORDS = {k.kind: record_model(spec_for(k.kind), k.personal) for k in KINDS}


# --- shared pieces --------------------------------------------------------------------------


def reveal_auditor(session: Session, actor: Principal, context: AuditContext) -> RevealHook:
    """Return the hook that audits each object shown with personal fields in clear (PIPL)."""

    def hook(kind: str, object_id: int, fields: list[str]) -> None:
        audit(session, actor=actor, action="read_sensitive", object_kind=kind,
              object_id=str(object_id), detail={"fields": fields}, context=context)

    return hook


def list_filters(query: FilterQuery) -> ListFilters:
    """Turn a list or export query into the service's filters."""
    values = query.model_dump(mode="json", exclude_none=True,
                              exclude={"f", "crs", "format"})
    values["bbox"] = parse_bbox(values.pop("bbox", None))
    return ListFilters.model_validate(values)


def list_page(session: Session, user: Principal, kind: str, query: Any) -> Page:
    """Return one page of a list; a cursor the database cannot compare is invalid input."""
    try:
        # A savepoint, so that a refused cursor leaves the request's transaction usable.
        with session.begin_nested():
            return list_objects(session, actor=user, kind=kind, filters=list_filters(query),
                                out_crs=getattr(query, "crs", "WGS84"))
    except DBAPIError as exc:
        # The cursor is opaque to clients; one edited by hand (a text where the sort key is a
        # number or a time) fails in the keyset comparison, which is not a server fault.
        if not query.cursor:
            raise
        raise InvalidInput("not a cursor from this list and sort", field="cursor") from exc


def wants_geojson(request: Request, query: FilterQuery) -> bool:
    """Return whether the caller asked for GeoJSON (``f=geojson`` or the Accept header)."""
    if getattr(query, "f", "json") == "geojson":
        return True
    return "application/geo+json" in request.headers.get("accept", "") and hasattr(query, "f")


def feature_collection(items: list[Record], next_cursor: str | None) -> JSONResponse:
    """Return a page of records as a GeoJSON FeatureCollection."""
    features = [{"type": "Feature", "id": r["id"], "geometry": r.get("geometry"),
                 "properties": {k: v for k, v in r.items() if k != "geometry"}}
                for r in items]
    body = {"type": "FeatureCollection", "features": features, "next_cursor": next_cursor,
            "numberReturned": len(features)}
    return JSONResponse(jsonable_encoder(body), media_type="application/geo+json")


def audit_write(session: Session, actor: Principal, context: AuditContext, action: str,
                kind: str, object_id: int, *, before: Any = None, after: Any = None) -> None:
    """Write the audit row of a base-data write (records are masked: no clear personal data)."""
    audit(session, actor=actor, action=f"{kind}.{action}", object_kind=kind,
          object_id=str(object_id), before=jsonable_encoder(before),
          after=jsonable_encoder(after), context=context)


# --- the router factory -----------------------------------------------------------------------


def kind_router(k: KindRoutes) -> APIRouter:
    """Build the router of one kind: list, export, read, create, update, delete."""
    spec = spec_for(k.kind)
    router = APIRouter(prefix=f"/api/v1/{k.path}", tags=[k.path])
    RecordModel = RECORDS[k.kind]
    SavedModel = saved_model(RecordModel)
    PageModel = page_model(RecordModel)
    formats = FORMATS if spec.has_geometry else ("csv", "xlsx")
    ListQuery, ExportQuery = query_models(spec, k.category, k.status, formats)
    columns = [n for n in RecordModel.model_fields if n not in ("geometry", "revealed")]
    Reader = Annotated[Principal, Depends(require(f"{spec.permission}.read"))]
    Editor = Annotated[Principal, Depends(require(f"{spec.permission}.write"))]
    Exporter = Annotated[Principal, Depends(require("export"))]
    geojson: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/geo+json": {"schema": GEOJSON_PAGE_SCHEMA}}}}

    @router.get("", response_model=PageModel, name=f"list_{k.kind}",
                responses=geojson if spec.has_geometry else None,
                summary=f"List {k.path} in your jurisdiction (filter, sort, page)")
    def list_(query: Annotated[ListQuery, Query()], request: Request,  # type: ignore[valid-type]
              user: Reader, session: SessionDep) -> Any:
        """List objects; pass ``next_cursor`` back as ``cursor`` for the next page."""
        page = list_page(session, user, k.kind, query)
        if wants_geojson(request, query):
            return feature_collection(page.items, page.next_cursor)
        return {"items": page.items, "next_cursor": page.next_cursor, "limit": query.limit}

    @router.get("/export", name=f"export_{k.kind}", response_class=Response,
                responses={200: {"content": {MEDIA[f].split(";")[0]: {} for f in formats}}},
                summary=f"Export {k.path} as {', '.join(formats)} (masked, watermarked)")
    def export(query: Annotated[ExportQuery, Query()],  # type: ignore[valid-type]
               user: Reader, _: Exporter, session: SessionDep, engine: EngineDep,
               context: AuditContextDep) -> Response:
        """Stream every matching object with a watermark; the export is audited."""
        filters = list_filters(query)
        # Checks permissions and filters now, before the response starts; fetches nothing.
        iter_rows(session, actor=user, kind=k.kind, filters=filters)
        audit(session, actor=user, action="export", object_kind=k.kind, context=context,
              detail={"format": query.format, "filters": filters.model_dump(
                  mode="json", exclude_defaults=True)})
        rows = stream_rows(engine, user, lambda s: iter_rows(s, actor=user, kind=k.kind,
                                                             filters=filters))
        return export_response(query.format, rows, columns, user, k.path)

    @router.get("/{object_id}", response_model=RecordModel, name=f"get_{k.kind}",
                summary=f"One {k.kind}; reveal=true shows personal fields (audited)")
    def get(object_id: Id, user: Reader, session: SessionDep, crypto: CryptoDep,
            context: AuditContextDep, reveal: bool = False,
            crs: Annotated[str, Query(pattern=r"^[A-Za-z0-9:_-]{1,40}$")] = "WGS84") -> Any:
        """Return one object; out of your jurisdiction is 404."""
        hook = reveal_auditor(session, user, context) if reveal else None
        return get_object(session, actor=user, kind=k.kind, object_id=object_id, reveal=reveal,
                          crypto=crypto, on_reveal=hook, out_crs=crs)

    @router.post("", status_code=201, response_model=SavedModel, name=f"create_{k.kind}",
                 summary=f"Create a {k.kind} (geometry repairs come back as warnings)")
    def create(body: k.create_model, user: Editor,  # type: ignore[name-defined]
               session: SessionDep, crypto: CryptoDep, context: AuditContextDep) -> Any:
        """Create an object; its location is derived by the server."""
        check_storable(body)
        result = k.create_with(session, user, crypto, body)
        audit_write(session, user, context, "create", k.kind, result.record["id"],
                    after=result.record)
        return {**result.record, "warnings": result.warnings}

    @router.patch("/{object_id}", response_model=SavedModel, name=f"update_{k.kind}",
                  summary=f"Update a {k.kind}; send the version you saw (stale: 409)")
    def update(object_id: Id, body: k.update_model, user: Editor,  # type: ignore[name-defined]
               session: SessionDep, crypto: CryptoDep, context: AuditContextDep) -> Any:
        """Change the fields sent; a stale version is a conflict."""
        check_storable(body)
        before = get_object(session, actor=user, kind=k.kind, object_id=object_id)
        result = k.update_with(session, user, crypto, object_id, body)
        audit_write(session, user, context, "update", k.kind, object_id, before=before,
                    after=result.record)
        return {**result.record, "warnings": result.warnings}

    @router.delete("/{object_id}", status_code=204, response_class=Response,
                   name=f"delete_{k.kind}", summary=f"Delete a {k.kind} (version required)")
    def delete(object_id: Id, version: Version, user: Editor, session: SessionDep,
               context: AuditContextDep) -> Response:
        """Delete an object nothing refers to any more."""
        before = get_object(session, actor=user, kind=k.kind, object_id=object_id)
        delete_object(session, actor=user, kind=k.kind, object_id=object_id, version=version)
        audit_write(session, user, context, "delete", k.kind, object_id, before=before)
        return Response(status_code=204)

    return router


# --- persons: lookup by document number or phone ------------------------------------------


class PersonLookup(BaseModel):
    """Find persons by a full document number or phone (exact match through the blind index)."""

    model_config = ConfigDict(extra="forbid")

    document_number: str | None = Field(default=None, min_length=1, max_length=40,
                                        pattern=NO_NUL)
    document_type: DocumentType | None = None
    phone: str | None = Field(default=None, min_length=1, max_length=30, pattern=NO_NUL)
    reveal: bool = False


lookup_router = APIRouter(prefix="/api/v1/persons", tags=["persons"])
PersonRecord = RECORDS["person"]


class PersonMatches(BaseModel):
    """The persons a lookup found (at most 100), masked unless revealed."""

    items: list[PersonRecord]  # type: ignore[valid-type]


@lookup_router.post("/lookup", response_model=PersonMatches,
                    summary="Find persons by full document number or phone (audited)")
def lookup_persons(body: PersonLookup, user: Annotated[Principal, Depends(require("person.read"))],
                   session: SessionDep, crypto: CryptoDep, context: AuditContextDep) -> Any:
    """Exact match by document number (any known type) or phone; POST keeps it out of URLs."""
    check_storable(body)
    hook = reveal_auditor(session, user, context) if body.reveal else None
    found = persons.find_persons(
        session, actor=user, crypto=crypto, document_number=body.document_number,
        document_type=body.document_type, phone=body.phone, reveal=body.reveal, on_reveal=hook)
    by = "document_number" if body.document_number is not None else "phone"
    # The number itself is never logged: only which key was used and how many matched.
    audit(session, actor=user, action="person.lookup", object_kind="person", context=context,
          detail={"by": by, "matches": len(found)})
    return {"items": found}


router = APIRouter()
router.include_router(lookup_router)
for _kind in KINDS:
    router.include_router(kind_router(_kind))

__all__ = ["KINDS", "KindRoutes", "kind_router", "router"]
