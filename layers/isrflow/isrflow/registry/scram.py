"""SCRAM-SHA-256 password verifiers, as PostgreSQL stores them (RFC 5802 / RFC 7677).

``CREATE ROLE ... PASSWORD '<verifier>'`` sets a password without the password itself ever
reaching the server (or its statement log): PostgreSQL recognises a string of the form
``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 parts) as an already
hashed password. Pure standard library.

Only ASCII passwords are accepted: SASLprep leaves printable ASCII unchanged, so the verifier
computed here is the one the server derives at login. Secrets Manager's generated passwords
are ASCII.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from isrflow.model.errors import ConfigError

#: PBKDF2 iterations (PostgreSQL's default ``scram_iterations``).
DEFAULT_ITERATIONS = 4096
#: Salt length (bytes), as PostgreSQL's own.
SALT_BYTES = 16


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA-256 of the password (RFC 5802 ``Hi()``); ConfigError for a non-ASCII one."""
    if not password.isascii() or not password.isprintable():
        raise ConfigError("registry role password: only printable ASCII passwords are supported")
    return hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)


def keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a password."""
    salted = salted_password(password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$...`` verifier of ``password`` (a random salt unless one is given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored, server = keys(password, salt, iterations)
    b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def verifier_matches(verifier: str, password: str) -> bool:
    """Whether a stored ``SCRAM-SHA-256$...`` verifier was made from ``password``."""
    try:
        method, rest = verifier.split("$", 1)
        head, tail = rest.split("$", 1)
        iterations, salt = head.split(":", 1)
        stored, server = tail.split(":", 1)
    except ValueError:
        return False
    if method != "SCRAM-SHA-256":
        return False
    want = keys(password, base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(want[0], base64.b64decode(stored)) and hmac.compare_digest(
        want[1], base64.b64decode(server)
    )


__all__ = ["DEFAULT_ITERATIONS", "keys", "salted_password", "scram_verifier", "verifier_matches"]
