"""Fixtures of the service and SQL tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from geoserver.domain.principal import Principal
from tests.support.etl import EtlRun, etl_database
from tests.support.objects import make_crypto, system_actor
from tests.support.regions import build_test_tree


@pytest.fixture
def tree(db) -> dict[str, str]:
    """The hand-made region tree (tests/support/regions.py) in the empty database; code → path."""
    return build_test_tree(db)


@pytest.fixture
def crypto():
    """The default cipher, as the settings make it."""
    return make_crypto()


@pytest.fixture
def system() -> Principal:
    """An actor for all base data everywhere, every special population, unmasked reads."""
    return system_actor()


@pytest.fixture(scope="module")
def etl(pg, module_db, tmp_path_factory) -> Iterator[EtlRun]:
    """``gridgov etl`` against this module's database."""
    with etl_database(pg, module_db, tmp_path_factory.mktemp("etl")) as run:
        yield run
