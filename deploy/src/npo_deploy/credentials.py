"""The local stack's secrets: a generated password per Kafka user and PostgreSQL role, kept in
the state dir (``secrets/``, owner-only files), never a default one.

Every broker and database server this checkout launches (``npo up``, the tests' scratch ones,
the benchmarks') uses the same files, so a process of the checkout can reach any of them as
the principal it is given: the launcher, the CLI and the tests as administrator, each service
started by ``npo up`` as itself (``service_env``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from npo_platform import acl
from npo_platform.settings import LOCAL_POSTGRES_DATABASE, LOCAL_POSTGRES_USER

KAFKA_ADMIN = acl.ADMIN
SCRAM = "SCRAM-SHA-512"
DATABASE_OWNER = LOCAL_POSTGRES_USER  # owns the database; tools and tests connect as it
DATABASE_SUPERUSER = "postgres"


def password(secrets_dir: Path, kind: str, name: str) -> str:
    """The password of ``name`` (a Kafka user or a database role), made on first use."""
    path = secrets_dir / kind / f"{name}.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_text(secrets.token_urlsafe(24) + "\n")
        staging.chmod(0o600)
        if path.exists():  # a racing run made it first
            staging.unlink()
        else:
            staging.replace(path)
    return path.read_text().strip()


def kafka_password(secrets_dir: Path, principal: str) -> str:
    return password(secrets_dir, "kafka", principal)


def database_password(secrets_dir: Path, role: str) -> str:
    return password(secrets_dir, "postgres", role)


def service_role(principal: acl.Principal) -> str:
    """A service's database role (and schema): ``npo-index`` → ``npo_index``."""
    return principal.name.replace("-", "_")


def kafka_env(secrets_dir: Path, principal: str) -> dict[str, str]:
    """The environment under which a process's Kafka clients authenticate as ``principal``."""
    return {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": SCRAM,
            "KAFKA_SASL_USERNAME": principal, "KAFKA_SASL_PASSWORD": kafka_password(secrets_dir, principal)}


def database_url(secrets_dir: Path, role: str, port: int, database: str = LOCAL_POSTGRES_DATABASE) -> str:
    return f"postgresql://{role}:{database_password(secrets_dir, role)}@127.0.0.1:{port}/{database}"


def use_admin(secrets_dir: Path) -> None:
    """Let this process's Kafka clients authenticate as the administrator, unless its
    environment names an identity already."""
    if "KAFKA_SASL_USERNAME" not in os.environ:
        os.environ.update(kafka_env(secrets_dir, KAFKA_ADMIN))
