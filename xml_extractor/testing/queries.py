"""The test harness's named queries (testing/sql/testing_*.sql, base.load_queries' format): the
synthetic data's, scripts/soak.py's and scripts/ops_bench.py's checks, the tests' reads. Kept out
of the product's query files: no command runs them."""

from __future__ import annotations

from functools import cache

from ..db.base import NamedQuery, Statement, _load_sections
from ..db.database import Database


@cache
def testing_queries(dialect: str) -> dict[str, NamedQuery]:
    """testing_common.sql overridden by name by testing_<dialect>.sql."""
    return _load_sections(dialect, "name", "testing_", "xml_extractor.testing")


def sql(db: Database, name: str, **identifiers: str) -> Statement:
    """The named harness query with the contract's identifiers substituted (as Database.sql)."""
    template = testing_queries(db.dialect.name)[name].template
    return Statement(template.format(**db.names, **identifiers), name)
