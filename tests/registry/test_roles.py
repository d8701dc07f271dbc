"""Least-privilege registry roles (isrflow.registry.roles) against the real PostgreSQL, each test in
its own schema with its own role names (roles are server-wide: they are dropped afterwards).

The shared server trusts every connection, so a role is used by connecting under its name; the
password itself is checked against the stored SCRAM verifier (and the verifier against RFC 7677).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from registry_helpers import PG_URL
from sqlalchemy.engine import make_url
from test_writer import EX, good_batch, items

from isrflow.model.errors import ConfigError
from isrflow.registry import Registry, apply_batch
from isrflow.registry.roles import RoleSpec, ensure_roles
from isrflow.registry.scram import keys, scram_verifier, verifier_matches

ON_POSTGRES = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
def role_names(backend, pg_admin) -> Iterator[dict[str, str]]:
    """Unique writer/reader role names for this test; the roles are dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {"writer": f"isrflow_t{tag}_writer", "reader": f"isrflow_t{tag}_reader"}
    yield names
    with pg_admin.begin() as conn:
        for name in names.values():
            if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar():
                conn.exec_driver_sql(f'DROP OWNED BY "{name}"')
                conn.exec_driver_sql(f'DROP ROLE "{name}"')


def _open_as(backend, role: str) -> Registry:
    """The test's registry opened as ``role`` (the server trusts the connection; no password sent)."""
    reg = Registry.open(make_url(PG_URL).set(username=role), backend.datastore, schema=backend.schema)
    backend._opened.append(reg)  # closed with the backend
    return reg


def _set_up(registry: Registry, names: dict[str, str]) -> dict[str, str]:
    passwords = {access: f"pw-{access}-{uuid.uuid4().hex}" for access in names}
    ensure_roles(registry.engine, [RoleSpec(names[a], passwords[a], a) for a in names])  # type: ignore[arg-type]
    return passwords


@ON_POSTGRES
def test_the_writer_applies_batches_and_the_reader_only_reads(backend, registry, role_names):
    _set_up(registry, role_names)
    writer = _open_as(backend, role_names["writer"])
    msgs, raw, bias, out = good_batch()
    result = apply_batch(writer, items(msgs))
    assert result.rejected == [] and result.retry == [] and len(result.applied) == len(msgs)
    # a replace deletes the output's old provenance rows, a malformed message lands in the rejects table
    again = out.model_copy(update={"uri": "file:///new.fits", "replace": True, "inputs": out.inputs[:1]})
    replaced = apply_batch(writer, items([again, "{not json"], prefix="r"))
    assert replaced.applied == ["r0"] and [i for i, _ in replaced.rejected] == ["r1"]

    reader = _open_as(backend, role_names["reader"])
    assert reader.get_dataset(out.id).uri == "file:///new.fits"
    assert [r.id for r in reader.query_datasets("bias", ["HSC/calib"])] == [bias.id]
    assert reader.applied_status(EX).complete
    plan = reader.find_quanta("instrument = 'HSC'", ["HSC/raw/all"], "HSC/calib", "HSC/runs/other")
    assert [q.raw.id for q in plan.quanta] == [raw.id]


@ON_POSTGRES
def test_the_writer_role_can_apply_a_batch_by_its_bulk_path(backend, registry, role_names):
    """Row sets go in as one array-valued INSERT ... SELECT FROM unnest(...) per table (registry/copy_pg.py):
    the writer role's INSERT/UPDATE/SELECT privileges are enough for it."""
    _set_up(registry, role_names)
    msgs, _, _, out = good_batch()
    result = apply_batch(_open_as(backend, role_names["writer"]), items(msgs))
    assert result.rejected == [] and result.retry == [] and len(result.applied) == len(msgs)
    assert registry.get_dataset(out.id).uri == out.uri


@ON_POSTGRES
def test_the_reader_cannot_insert_and_the_writer_cannot_change_the_schema(backend, registry, role_names):
    _set_up(registry, role_names)
    reader = _open_as(backend, role_names["reader"])
    with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"), reader.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO collection (name, type, doc) VALUES ('y', 'RUN', '')"))
    with reader.engine.connect() as conn:  # even outside the read-only default, no INSERT privilege
        conn.exec_driver_sql("SET default_transaction_read_only = off")
        conn.commit()
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table collection"):
            conn.execute(sa.text("INSERT INTO collection (name, type, doc) VALUES ('x', 'RUN', '')"))
    writer = _open_as(backend, role_names["writer"])
    forbidden = [
        "CREATE TABLE sneaky (x int)",
        "DROP TABLE dataset",
        "UPDATE alembic_version SET version_num = 'x'",
        "DELETE FROM dataset",
        "INSERT INTO collection_chain (parent, child, position) VALUES ('a', 'b', 0)",
    ]
    for statement in forbidden:
        with (
            writer.engine.connect() as conn,
            pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"),
        ):
            conn.execute(sa.text(statement))


@ON_POSTGRES
def test_roles_are_login_only_with_the_password_as_a_verifier(backend, registry, role_names, pg_admin):
    passwords = _set_up(registry, role_names)
    with pg_admin.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolpassword FROM pg_authid "
                "WHERE rolname IN :names"
            ).bindparams(sa.bindparam("names", expanding=True)),
            {"names": list(role_names.values())},
        ).all()
    by_name = {r.rolname: r for r in rows}
    for access, name in role_names.items():
        row = by_name[name]
        assert row.rolcanlogin and not (row.rolsuper or row.rolcreaterole or row.rolcreatedb)
        assert row.rolpassword.startswith("SCRAM-SHA-256$")
        assert verifier_matches(row.rolpassword, passwords[access])
        assert not verifier_matches(row.rolpassword, passwords[access] + "x")


@ON_POSTGRES
def test_setting_up_again_changes_the_password_and_narrows_the_grants(
    backend, registry, role_names, pg_admin
):
    _set_up(registry, role_names)
    # the same name as a reader now: the writer's INSERT/UPDATE/DELETE grants are revoked
    ensure_roles(registry.engine, [RoleSpec(role_names["writer"], "new-password", "reader")])
    with pg_admin.connect() as conn:
        privileges = conn.execute(
            sa.text(
                "SELECT DISTINCT privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = :g AND table_schema = :s"
            ),
            {"g": role_names["writer"], "s": backend.schema},
        ).scalars()
        stored = conn.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"), {"n": role_names["writer"]}
        ).scalar()
    assert set(privileges) == {"SELECT"}
    assert verifier_matches(stored, "new-password")


def test_role_specs_are_checked():
    with pytest.raises(ConfigError, match="lower-case identifier"):
        RoleSpec('x"; DROP TABLE dataset; --', "pw", "writer")
    with pytest.raises(ConfigError, match="access 'admin'"):
        RoleSpec("isrflow_admin", "pw", "admin")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty password"):
        RoleSpec("isrflow_writer", "", "writer")
    assert "pw-secret" not in repr(RoleSpec("isrflow_writer", "pw-secret", "writer"))
    with pytest.raises(ConfigError, match="printable ASCII"):
        scram_verifier("pässword")


def test_scram_verifier_against_rfc_7677():
    """RFC 7677's example exchange (user "user", password "pencil"): the ServerSignature computed from
    our ServerKey, and the ClientProof from our StoredKey, are the RFC's."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    stored, server = keys("pencil", salt, 4096)
    auth = (
        b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    server_signature = hmac.new(server, auth, hashlib.sha256).digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    client_signature = hmac.new(stored, auth, hashlib.sha256).digest()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored
    verifier = scram_verifier("pencil", salt=salt)
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") and verifier_matches(
        verifier, "pencil"
    )
    assert json.dumps(verifier)  # plain ASCII
