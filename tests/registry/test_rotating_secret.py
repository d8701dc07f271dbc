"""The registry secret rotates (RDS-managed secrets do, every 7 days by default): a warm
Lambda must re-read it after a maximum age and when the database rejects the cached password.

The shared test server on 127.0.0.1:5432 trusts every connection (no password is ever
checked), so the rotation tests start their own throwaway PostgreSQL cluster with the same
server binaries and ``scram-sha-256`` password authentication on 127.0.0.1 (an ephemeral
port). Secrets Manager is moto's.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from moto import mock_aws

import isrflow.infra.settings as settings_module
from isrflow.infra.secret_cache import ENV_SECRET_MAX_AGE_S, SecretCache
from isrflow.infra.settings import Settings, open_registry
from isrflow.model.errors import ConfigError, RegistryUnavailableError
from isrflow.registry import Registry
from tests.fake_aws import use_fake_aws

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
ROLE = "isrflow_rotating"


class FakeClock:
    """Seconds on a monotonic scale, advanced by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI=true: the rotation tests must run)", pytrace=False)
    pytest.skip(message)


def _server_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, found)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[sa.Engine, int]]:
    """A throwaway PostgreSQL cluster that checks passwords on 127.0.0.1; (superuser engine, port)."""
    bindir = _server_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="isrflow-pgauth-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the postgres user
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            _unavailable("running as root and there is no 'postgres' user to run a scratch cluster")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def run(*argv: str) -> None:
        result = subprocess.run([*run_as, *argv], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-N",
            "-E",
            "UTF8",
        )
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-t",
            "60",
            "-l",
            str(base / "server.log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
    except Exception as exc:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"cannot start a scratch PostgreSQL cluster: {exc}")
    admin = sa.create_engine(
        sa.engine.URL.create(
            "postgresql+psycopg",
            username="postgres",
            database="postgres",
            query={"host": str(base), "port": str(port)},
        ),
        isolation_level="AUTOCOMMIT",
    )
    try:
        yield admin, port
    finally:
        admin.dispose()
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def rotating(password_server, monkeypatch) -> Iterator[dict]:
    """A role with a password owning a fresh database, its secret in moto, a secret cache on a fake clock."""
    admin, port = password_server
    use_fake_aws(monkeypatch)
    monkeypatch.delenv(ENV_SECRET_MAX_AGE_S, raising=False)
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS registry WITH (FORCE)"))
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {ROLE}"))
        conn.execute(sa.text(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'first-password'"))
        conn.execute(sa.text(f"CREATE DATABASE registry OWNER {ROLE}"))
    clock = FakeClock()
    monkeypatch.setattr(settings_module, "SECRETS", SecretCache(clock=clock))
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(
            Name="isrflow-registry", SecretString=json.dumps({"username": ROLE, "password": "first-password"})
        )["ARN"]
        url = f"postgresql+psycopg://127.0.0.1:{port}/registry"
        # The schema exists before the functions open the registry (the stack's migration did it).
        Registry.create(f"postgresql+psycopg://{ROLE}:first-password@127.0.0.1:{port}/registry").close()

        def set_database_password(password: str) -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"ALTER ROLE {ROLE} PASSWORD '{password}'"))

        def rotate(password: str) -> None:
            """What a rotation does: the role's password changes, then the secret's."""
            set_database_password(password)
            value = json.dumps({"username": ROLE, "password": password})
            client.put_secret_value(SecretId=arn, SecretString=value)

        def drop_connections() -> None:
            """The pooled connections die (idle timeout, failover): the next operation must reconnect."""
            with admin.connect() as conn:
                query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"
                conn.execute(sa.text(query), {"r": ROLE})

        try:
            yield {
                "config": Settings(registry_url=url, registry_secret_arn=arn),
                "rotate": rotate,
                "set_database_password": set_database_password,
                "drop_connections": drop_connections,
                "clock": clock,
                "arn": arn,
            }
        finally:
            for key in [k for k in settings_module._REGISTRIES if f"127.0.0.1:{port}/registry" in k]:
                settings_module._REGISTRIES.pop(key).close()  # type: ignore[attr-defined]


def test_registry_survives_a_rotation_with_one_reread(rotating):
    registry = open_registry(rotating["config"])
    assert registry.register_collection("HSC/raw/all", "RUN")
    reads_before = settings_module.SECRETS.reads

    rotating["rotate"]("second-password")
    rotating["drop_connections"]()

    # The cached password is now wrong: the connection fails authentication, the secret is
    # re-read once and the connection retried once.
    assert open_registry(rotating["config"]) is registry
    assert registry.collections() == [("HSC/raw/all", "RUN")]
    assert settings_module.SECRETS.reads == reads_before + 1
    assert registry.register_collection("HSC/calib", "CALIBRATION")
    assert settings_module.SECRETS.reads == reads_before + 1


def test_a_wrong_password_is_reread_once_then_reported(rotating):
    registry = open_registry(rotating["config"])
    registry.collections()
    reads_before = settings_module.SECRETS.reads
    # The database's password changes but the secret is not updated (a broken rotation).
    rotating["set_database_password"]("never-stored")
    rotating["drop_connections"]()
    with pytest.raises(RegistryUnavailableError, match="password authentication failed"):
        registry.collections()
    assert settings_module.SECRETS.reads == reads_before + 1  # one re-read, no loop


def test_cached_secret_expires_after_its_max_age(rotating, monkeypatch):
    cache = settings_module.SECRETS
    arn, clock = rotating["arn"], rotating["clock"]
    assert cache.get(arn)["password"] == "first-password" and cache.reads == 1
    rotating["rotate"]("second-password")
    clock.now += 299.0
    assert cache.get(arn)["password"] == "first-password" and cache.reads == 1  # younger than 300 s
    clock.now += 1.0
    assert cache.get(arn)["password"] == "second-password" and cache.reads == 2
    monkeypatch.setenv(ENV_SECRET_MAX_AGE_S, "10")
    rotating["rotate"]("third-password")
    clock.now += 10.0
    assert cache.get(arn)["password"] == "third-password" and cache.reads == 3


def test_expired_secret_is_used_for_new_connections_without_an_auth_failure(rotating):
    registry = open_registry(rotating["config"])
    registry.collections()
    rotating["rotate"]("second-password")
    rotating["drop_connections"]()
    rotating["clock"].now += 301.0
    reads_before = settings_module.SECRETS.reads
    assert registry.collections() == []
    assert settings_module.SECRETS.reads == reads_before + 1  # re-read for its age, not for a failure


def test_max_age_setting_is_validated(monkeypatch):
    cache = SecretCache(fetch=lambda arn: {"username": "u", "password": "p"})
    monkeypatch.setenv(ENV_SECRET_MAX_AGE_S, "soon")
    with pytest.raises(ConfigError, match=ENV_SECRET_MAX_AGE_S):
        cache.get("arn")
    monkeypatch.setenv(ENV_SECRET_MAX_AGE_S, "0")
    cache.get("arn")
    cache.get("arn")
    assert cache.reads == 2  # 0: never served from the cache
