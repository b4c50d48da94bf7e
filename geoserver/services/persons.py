"""Persons (实有人口): create, update and find by document number.

Document numbers and phones are validated (GB 11643 checksum for resident IDs and HMT permits,
the 2023 foreign permanent residence card, legacy 15-digit IDs, passports), then stored three
ways: encrypted (``*_enc``), as a keyed hash for equality search (``*_hash``, the blind index)
and masked for display. A legacy 15-digit ID is hashed as its 18-digit form, so a search by
either spelling finds the person and the same person cannot be registered twice.

Special populations (特殊人群): a person with ``special_category`` X is visible only to actors
with X (or ``*``) in ``actor.special_categories``; to everyone else it does not exist (NotFound,
absent from lists and searches). Setting or changing a category needs the same permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.orm import Session

from geoserver.database.models.objects import Person, PersonType, Residence, SpecialCategory
from geoserver.domain.documents import (
    DocumentInvalid,
    DocumentType,
    Gender,
    birth_date_from_id,
    gender_from_id,
    mask_id_number,
    mask_phone,
    normalize_document,
    normalize_phone,
    upgrade_legacy_id,
)
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services.buildings import residences_in, visible_parent
from geoserver.services.objects import (
    KindSpec,
    Record,
    RevealHook,
    Saved,
    base_select,
    changed,
    equals,
    insert_row,
    load_row,
    parse,
    read_options,
    refuse_clearing,
    region_in_scope,
    register,
    require,
    saved,
    sort_keys_for,
    table_of,
    to_record,
    update_row,
    updates_from,
)

DOCUMENT_CONTEXT = "person.document_number"
PHONE_CONTEXT = "person.phone"
# Tried in this order when a search does not say the document type; passports last, since
# almost any short alphanumeric string has a passport's shape.
_SEARCH_ORDER = (DocumentType.RESIDENT_ID, DocumentType.HMT_RESIDENCE_PERMIT,
                 DocumentType.FOREIGN_PERMANENT_RESIDENCE, DocumentType.LEGACY_ID,
                 DocumentType.PASSPORT)

_P = table_of(Person)
_R = table_of(Residence)

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]


class PersonCreate(BaseModel):
    """A new person, located by a residence (or a household's residence), else a region code."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    document_type: DocumentType | None = None
    document_number: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=30)
    gender: Gender | None = None
    birth_date: date | None = None
    person_type: PersonType = PersonType.REGISTERED
    household_id: int | None = None
    relation_to_head: str | None = Field(default=None, min_length=1, max_length=20)
    residence_id: int | None = None
    region_code: str | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=30)
    special_category: SpecialCategory | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class PersonUpdate(BaseModel):
    """Changes to a person; only the fields sent change. ``version`` is the one you saw."""

    model_config = ConfigDict(extra="forbid")

    version: int
    name: str | None = Field(default=None, min_length=1, max_length=100)
    document_type: DocumentType | None = None
    document_number: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=30)
    gender: Gender | None = None
    birth_date: date | None = None
    person_type: PersonType | None = None
    household_id: int | None = None
    relation_to_head: str | None = Field(default=None, min_length=1, max_length=20)
    residence_id: int | None = None
    region_code: str | None = None
    tags: list[Tag] | None = Field(default=None, max_length=30)
    special_category: SpecialCategory | None = None
    attributes: dict[str, Any] | None = None


# --- personal fields --------------------------------------------------------------------------


def _invalid(exc: DocumentInvalid) -> InvalidInput:
    return InvalidInput(exc.reason, field=exc.field)


def blind_key(doc_type: DocumentType, canonical: str) -> str:
    """Return the value hashed for a document: the 18-digit form of a legacy ID."""
    return upgrade_legacy_id(canonical) if doc_type is DocumentType.LEGACY_ID else canonical


def document_columns(crypto: PersonalDataCrypto, doc_type: DocumentType | None,
                     number: str | None) -> tuple[dict[str, Any], str | None]:
    """Validate a document and return its stored columns and its canonical number."""
    if doc_type is None and number is None:
        return {"document_type": None, "document_number_enc": None,
                "document_number_hash": None, "document_number_masked": None}, None
    if doc_type is None:
        raise InvalidInput("say which document the number is", field="document_type")
    if number is None:
        raise InvalidInput("a document type needs its number", field="document_number")
    try:
        canonical = normalize_document(doc_type, number)
    except DocumentInvalid as exc:
        raise _invalid(exc) from None
    return {
        "document_type": doc_type,
        "document_number_enc": crypto.encrypt(canonical, context=DOCUMENT_CONTEXT),
        "document_number_hash": crypto.blind_index(blind_key(doc_type, canonical)),
        "document_number_masked": mask_id_number(canonical),
    }, canonical


def phone_columns(crypto: PersonalDataCrypto, phone: str | None) -> dict[str, Any]:
    """Validate a phone and return its stored columns (all None to clear it)."""
    if phone is None:
        return {"phone_enc": None, "phone_hash": None, "phone_masked": None}
    try:
        normal = normalize_phone(phone)
    except DocumentInvalid as exc:
        raise _invalid(exc) from None
    return {"phone_enc": crypto.encrypt(normal, context=PHONE_CONTEXT),
            "phone_hash": crypto.blind_index(normal), "phone_masked": mask_phone(normal)}


def _from_id(doc_type: DocumentType | None, canonical: str | None) -> tuple[date | None,
                                                                           Gender | None]:
    """Return the birth date and gender an ID-style number encodes, if it encodes them."""
    if canonical is None or doc_type is DocumentType.PASSPORT:
        return None, None
    try:
        return birth_date_from_id(canonical), gender_from_id(canonical)
    except DocumentInvalid:  # the 2017 foreign permit encodes neither
        return None, None


def derived_facts(doc_type: DocumentType | None, canonical: str | None,
                  birth: date | None, gender: Gender | None) -> dict[str, Any]:
    """Fill birth date and gender from the ID; refuse values that contradict it."""
    id_birth, id_gender = _from_id(doc_type, canonical)
    if id_birth and birth and birth != id_birth:
        raise InvalidInput("birth_date does not match the document number", field="birth_date")
    if id_gender and gender and gender != id_gender:
        raise InvalidInput("gender does not match the document number", field="gender")
    return {"birth_date": birth or id_birth, "gender": gender or id_gender}


# --- visibility -------------------------------------------------------------------------------


def may_see_category(actor: Principal, category: str | None) -> bool:
    """Return whether the actor may see a person of this special category (None: anyone)."""
    cats = actor.special_categories
    return category is None or "*" in cats or category in cats


def _visibility(actor: Principal) -> ColumnElement[bool]:
    cats = actor.special_categories
    if "*" in cats:
        return true()
    return or_(_P.c.special_category.is_(None), _P.c.special_category.in_(sorted(cats)))


def _check_category(actor: Principal, category: str | None) -> None:
    if not may_see_category(actor, category):
        raise PermissionDenied("needs the permission for this special population category")


# --- location ---------------------------------------------------------------------------------


def _location(session: Session, actor: Principal, residence_id: int | None,
              household_id: int | None, region_code: str | None) -> dict[str, Any]:
    """Return residence_id (and path/region_id when no residence) for a person."""
    if household_id is not None:
        household = visible_parent(session, actor, "household", household_id, "household_id")
        if residence_id is None:
            residence_id = household["residence_id"]
    if residence_id is not None:
        if region_code is not None:
            raise InvalidInput("a person with a residence is located by it; send no region_code",
                               field="region_code")
        visible_parent(session, actor, "residence", residence_id, "residence_id")
        return {"residence_id": residence_id}  # the trigger copies the residence's path
    region_id, path = region_in_scope(session, actor, region_code)
    return {"residence_id": None, "path": path, "region_id": region_id}


# --- services ---------------------------------------------------------------------------------

_PLAIN = ("name", "person_type", "household_id", "relation_to_head", "tags", "special_category",
          "attributes")


def create_person(session: Session, *, actor: Principal, crypto: PersonalDataCrypto,
                  data: PersonCreate | dict[str, Any]) -> Saved:
    """Register a person; the document and phone are validated, encrypted, hashed and masked."""
    require(actor, "person.write")
    data = parse(PersonCreate, data)
    _check_category(actor, data.special_category)
    doc, canonical = document_columns(crypto, data.document_type, data.document_number)
    values = {c: getattr(data, c) for c in _PLAIN} | doc | phone_columns(crypto, data.phone)
    values |= derived_facts(data.document_type, canonical, data.birth_date, data.gender)
    values |= _location(session, actor, data.residence_id, data.household_id, data.region_code)
    new_id = insert_row(session, PERSON, values)
    return saved(session, PERSON, actor, new_id, [])


def _document_update(crypto: PersonalDataCrypto, data: PersonUpdate,
                     row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the columns a PersonUpdate changes about the document, birth date and gender."""
    doc_changed = changed(data, "document_type", "document_number")
    if not (doc_changed or changed(data, "birth_date", "gender")):
        return {}
    values: dict[str, Any] = {}
    doc_type = data.document_type if changed(data, "document_type") else row["document_type"]
    if doc_changed:
        values, canonical = document_columns(crypto, doc_type, data.document_number)
    elif row["document_number_enc"] is not None:
        # Only to check a new birth date or gender against the number already on file.
        canonical = crypto.decrypt(row["document_number_enc"], context=DOCUMENT_CONTEXT)
    else:
        canonical = None
    birth = data.birth_date if changed(data, "birth_date") else row["birth_date"]
    gender = data.gender if changed(data, "gender") else row["gender"]
    return values | derived_facts(doc_type, canonical, birth, gender)


def _move(session: Session, actor: Principal, data: PersonUpdate) -> dict[str, Any]:
    """Return the location columns an update changes (residence, household, region code)."""
    if not changed(data, "residence_id", "household_id", "region_code"):
        return {}
    residence = data.residence_id if changed(data, "residence_id") else None
    if residence is None and data.household_id is None and data.region_code is None:
        if changed(data, "residence_id"):
            raise InvalidInput("a person without a residence needs a region_code",
                               field="region_code")
        return {}  # only the household was cleared: the person stays where they are
    return _location(session, actor, residence, data.household_id, data.region_code)


def update_person(session: Session, *, actor: Principal, crypto: PersonalDataCrypto,
                  person_id: int, data: PersonUpdate | dict[str, Any]) -> Saved:
    """Update a person; changing residence, household or region code moves them."""
    require(actor, "person.write")
    data = parse(PersonUpdate, data)
    row = load_row(session, PERSON, actor, person_id, for_update=True)
    values = updates_from(data, _PLAIN)
    refuse_clearing(values, "name", "person_type", "tags", "attributes")
    if "special_category" in values:
        _check_category(actor, values["special_category"])
    values |= _document_update(crypto, data, row)
    if changed(data, "phone"):
        values |= phone_columns(crypto, data.phone)
    values |= _move(session, actor, data)
    update_row(session, PERSON, row, data.version, values)
    return saved(session, PERSON, actor, person_id, [])


def _search_hashes(crypto: PersonalDataCrypto, number: str,
                   doc_type: DocumentType | None) -> list[bytes]:
    """Return the blind index of a document number, trying every type when none is given."""
    hashes = []
    for kind in ([doc_type] if doc_type else _SEARCH_ORDER):
        try:
            canonical = normalize_document(kind, number)
        except DocumentInvalid as exc:
            if doc_type:
                raise _invalid(exc) from None
            continue
        hashes.append(crypto.blind_index(blind_key(kind, canonical)))
    if not hashes:
        raise InvalidInput("not a document number of any known type", field="document_number")
    return hashes


def _document_type(value: DocumentType | str | None) -> DocumentType | None:
    if value is None or isinstance(value, DocumentType):
        return value
    try:
        return DocumentType(value)
    except ValueError:
        raise InvalidInput("unknown document type", field="document_type") from None


def find_persons(
    session: Session,
    *,
    actor: Principal,
    crypto: PersonalDataCrypto,
    document_number: str | None = None,
    document_type: DocumentType | str | None = None,
    phone: str | None = None,
    reveal: bool = False,
    on_reveal: RevealHook | None = None,
) -> list[Record]:
    """Find persons by a full document number or phone through the blind index (exact match)."""
    require(actor, "person.read")
    options = read_options(actor, reveal=reveal, crypto=crypto, on_reveal=on_reveal,
                           out_crs="WGS84")
    stmt = base_select(PERSON, actor)
    if document_number is not None:
        kind = _document_type(document_type)
        stmt = stmt.where(_P.c.document_number_hash.in_(
            _search_hashes(crypto, document_number, kind)))
    elif phone is not None:
        try:
            normal = normalize_phone(phone)
        except DocumentInvalid as exc:
            raise _invalid(exc) from None
        stmt = stmt.where(_P.c.phone_hash == crypto.blind_index(normal))
    else:
        raise InvalidInput("give a document number or a phone", field="document_number")
    rows = session.execute(stmt.order_by(_P.c.id).limit(100)).mappings().all()
    return [to_record(PERSON, row, options) for row in rows if actor.covers(str(row["path"]))]


def _masked(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"document_number": row["document_number_masked"], "phone": row["phone_masked"]}


def _revealed(row: Mapping[str, Any], crypto: PersonalDataCrypto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if row["document_number_enc"] is not None:
        out["document_number"] = crypto.decrypt(row["document_number_enc"],
                                                context=DOCUMENT_CONTEXT)
    if row["phone_enc"] is not None:
        out["phone"] = crypto.decrypt(row["phone_enc"], context=PHONE_CONTEXT)
    return out


PERSON = register(KindSpec(
    kind="person",
    permission="person",
    table=_P,
    hidden=frozenset({"document_number_enc", "document_number_hash", "document_number_masked",
                      "phone_enc", "phone_hash", "phone_masked"}),
    has_geometry=False,
    text_columns=("name",),
    filters={
        "category": equals(_P, "person_type"),
        "tags": lambda tags: _P.c.tags.contains(list(tags)),
        "special_category": equals(_P, "special_category"),
        "household_id": equals(_P, "household_id"),
        "residence_id": equals(_P, "residence_id"),
        "building_id": lambda bid: _P.c.residence_id.in_(
            select(_R.c.id).where(_R.c.building_id == bid)),
    },
    sort_keys=sort_keys_for(_P, "name"),
    bbox_clause=lambda env: _P.c.residence_id.in_(residences_in(env)),
    visibility=_visibility,
    masked=_masked,
    revealed=_revealed,
    error_fields={"person_document_number_hash_key": "document_number",
                  "person_document_check": "document_number",
                  "person_household_id_fkey": "household_id",
                  "person_residence_id_fkey": "residence_id"},
))
