"""Where an ETL command runs: the database, who acts, in what scope.

Commands connect as the app role (row-level security applies, exactly as for the API) and act
either as the **operator** — the person at the shell holding the database credentials, who
acts with system scope and every permission, audited under ``etl:<os user>`` — or, with
``--as-user USERNAME``, as that gridgov user: their roles, permissions and jurisdiction, as
``geoserver.services.auth.principal_for`` resolves them for a login. ``--scope``/``--region``
narrows either to one region inside it.
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from geoserver.config import Settings
from geoserver.database import migrate as migrations
from geoserver.database.engine import SYSTEM_SCOPE, make_engine, set_scope
from geoserver.database.runtime import DatabaseTarget, open_database
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.security.crypto import PersonalDataCrypto, crypto_from_settings
from geoserver.services.auth import principal_for
from spatial_etl.problems import EtlInputError

#: Long imports and recounts run far beyond a request's statement timeout.
STATEMENT_TIMEOUT = "60min"


@dataclass
class EtlEnv:
    """An open database, the acting principal and the personal-data cipher."""

    target: DatabaseTarget
    engine: Engine
    actor: Principal
    crypto: PersonalDataCrypto
    settings: Settings

    @property
    def is_operator(self) -> bool:
        """Return whether the operator acts (system scope and rights), not a gridgov user."""
        return self.actor.scope == SYSTEM_SCOPE and self.actor.can("*") and \
            self.actor.user_id is None

    @contextmanager
    def bulk_session(self) -> Iterator[tuple[Session, bool]]:
        """Yield (session, trusted) for a set-based load.

        The operator's loads run as the owner with ``gridgov.trusted_location`` on, the bulk
        mechanism the location triggers provide (the demo loader's too): the merge derives
        path and region with one set-based ``gridgov_meta.locate`` join instead of one trigger
        call per row, ~4x faster, with the same result. A gridgov user's loads (``--as-user``)
        run as the app role under row-level security, the triggers deriving every location.
        """
        if not self.is_operator:
            with self.session() as session:
                yield session, False
            return
        owner = make_engine(self.target.owner_url, pool_size=1,
                            statement_timeout_ms=60 * 60 * 1000)
        try:
            with Session(owner, expire_on_commit=False) as session:
                session.begin()
                set_scope(session, SYSTEM_SCOPE)
                session.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
                session.execute(text("SET LOCAL gridgov.trusted_location = 'on'"))
                try:
                    yield session, True
                finally:
                    if session.in_transaction():
                        session.rollback()
        finally:
            owner.dispose()

    @property
    def app_url(self) -> str:
        """Return the app role's URL (for Dask workers, which open their own connections)."""
        return self.target.app_url

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session in one transaction with the actor's scope; the caller commits."""
        with Session(self.engine, expire_on_commit=False) as session:
            session.begin()
            set_scope(session, self.actor.scope or ())
            session.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
            try:
                yield session
            finally:
                if session.in_transaction():
                    session.rollback()


def operator() -> Principal:
    """Return the operator's principal: the system's rights, named after the OS user."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return dataclasses.replace(SYSTEM, username=f"etl:{who}")


def resolve_user(session: Session, username: str) -> Principal:
    """Return the principal of an active gridgov user, as a login would build it."""
    row = session.execute(text("SELECT id, is_active FROM gridgov_meta.user_for_login(:u)"),
                          {"u": username}).first()
    principal = principal_for(session, row.id) if row is not None and row.is_active else None
    if principal is None:
        raise EtlInputError(f"--as-user: no active user {username!r}")
    return principal


def narrow(session: Session, actor: Principal, region_code: str) -> Principal:
    """Return the actor limited to one region of their jurisdiction."""
    path = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                                "AND valid_to IS NULL"), {"c": region_code}).scalar()
    if path is None or not actor.covers(path):
        raise EtlInputError(f"region {region_code} is not in {actor.username}'s jurisdiction")
    return dataclasses.replace(actor, scope=(path,))


@contextmanager
def connect(*, as_user: str | None = None, region: str | None = None,
            settings: Settings | None = None) -> Iterator[EtlEnv]:
    """Open the configured database and resolve who acts; stop a cluster started here."""
    settings = settings or Settings()
    target = open_database(settings.database)
    engine = make_engine(target.app_url, pool_size=2, statement_timeout_ms=60 * 60 * 1000)
    try:
        status = migrations.schema_status(target.owner_url)
        if not status.current:
            raise EtlInputError(status.explain())
        with Session(engine) as session, session.begin():
            set_scope(session, SYSTEM_SCOPE)
            actor = resolve_user(session, as_user) if as_user else operator()
            if region:
                set_scope(session, actor.scope)
                actor = narrow(session, actor, region)
        yield EtlEnv(target, engine, actor, crypto_from_settings(settings.security), settings)
    finally:
        engine.dispose()
        target.close()
