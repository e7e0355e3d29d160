"""The throwaway PostgreSQL server (tests/postgres_server.py) answers, and is one shared database."""

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.postgres_server import (  # the fixture, imported so that pytest finds it here
    postgres_url,  # noqa: F401
    require_postgres_binaries,
    running_postgres,
)


def test_server_answers_and_is_shared_between_engines(postgres_url):  # noqa: F811
    writer = create_engine(postgres_url)
    try:
        with writer.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert "PostgreSQL" in conn.execute(text("SELECT version()")).scalar_one()
        with writer.begin() as conn:
            conn.execute(
                text("CREATE TABLE trials (id integer PRIMARY KEY, value double precision)")
            )
            conn.execute(text("INSERT INTO trials VALUES (1, 0.5), (2, 0.25)"))
    finally:
        writer.dispose()

    # A separate engine (its own pool, its own connection) sees the committed rows.
    reader = create_engine(postgres_url)
    try:
        with reader.connect() as conn:
            rows = conn.execute(text("SELECT id, value FROM trials ORDER BY id")).all()
    finally:
        reader.dispose()
    assert [tuple(row) for row in rows] == [(1, 0.5), (2, 0.25)]


def test_server_is_stopped_and_removed_after_the_block(tmp_path):
    require_postgres_binaries()
    with running_postgres(tmp_path) as url:
        engine = create_engine(url)
        with engine.connect() as conn:
            data_dir = Path(conn.execute(text("SHOW data_directory")).scalar_one())
        engine.dispose()
        assert (data_dir / "postmaster.pid").is_file()
    assert not data_dir.parent.exists()  # the server's private directory is gone
    assert "database system is shut down" in (tmp_path / "postgresql.log").read_text()
    with pytest.raises(OperationalError):
        create_engine(url).connect()
