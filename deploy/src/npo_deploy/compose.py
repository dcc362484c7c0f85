"""The compose file's locked infrastructure, from the code: the topics its broker's
administrator creates and the ACLs it grants (``deploy/compose``, written by
``npo k8s generate``), and the generated passwords it reads from ``.env`` (``npo compose-env``).
"""

from __future__ import annotations

from pathlib import Path

from npo_deploy import credentials
from npo_platform import acl
from npo_platform.topics import ALL_TOPICS, replication_for

HERE = Path(__file__).resolve().parents[2] / "compose"
PARTITIONS = 3


def topics() -> str:
    """``name partitions key=value,…`` per topic and dead letter (one broker: one replica)."""
    _, min_isr = replication_for(1)
    lines = []
    for topic in ALL_TOPICS:
        settings = ",".join(f"{k}={v}" for k, v in (("min.insync.replicas", str(min_isr)), *topic.config))
        lines.append(f"{topic.name} {PARTITIONS} {settings}")
        lines.append(f"{topic.dead_letter} {PARTITIONS} min.insync.replicas={min_isr}")
    return "".join(f"{line}\n" for line in lines)


def acls() -> str:
    """``principal kind name pattern operations`` per ACL of every principal (``kafka-acls.sh``)."""
    lines = []
    for p in acl.PRINCIPALS:
        lines += [f"{p.name} topic {name} literal Write,Describe" for name in p.written]
        lines += [f"{p.name} topic {name} literal Read,Describe" for name in p.read]
        lines += [f"{p.name} topic {name} literal Describe" for name in p.described]
        if p.group:
            lines.append(f"{p.name} group {p.group} {'prefixed' if p.group_prefix else 'literal'} Read")
    return "".join(f"{line}\n" for line in lines)


def files() -> dict[str, str]:
    """File name under deploy/compose → its text (comment-free: the start script reads lines)."""
    return {"kafka-topics.txt": topics(), "kafka-acls.txt": acls()}


def generate(target: Path = HERE) -> list[Path]:
    written = []
    for name, text in files().items():
        (target / name).write_text(text)
        written.append(target / name)
    return written


def env_variable(kind: str, name: str) -> str:
    """The .env variable holding ``name``'s password: NPO_KAFKA_INDEX_PASSWORD, NPO_DB_INDEX_…"""
    return f"NPO_{kind}_{name.removeprefix('npo-').removeprefix('npo_').upper()}_PASSWORD"


def env(secrets: Path) -> str:
    """The .env of the compose file: every password it needs, the local stack's own (made on
    first use), so no container starts with a default password."""
    values = {"POSTGRES_PASSWORD": credentials.database_password(secrets, credentials.DATABASE_SUPERUSER),
              env_variable("KAFKA", "admin"): credentials.kafka_password(secrets, credentials.KAFKA_ADMIN)}
    for principal in acl.PRINCIPALS:
        values[env_variable("KAFKA", principal.name)] = credentials.kafka_password(secrets, principal.name)
    for principal in acl.SERVICES:
        role = credentials.service_role(principal)
        values[env_variable("DB", role)] = credentials.database_password(secrets, role)
    return "".join(f"{key}={value}\n" for key, value in values.items())
