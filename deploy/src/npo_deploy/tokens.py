"""``npo token``: signed development tokens from the local issuer, whose key the local stack generates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from npo_platform.identity import Principal, Role, ensure_local_keypair, issue_token, keypair_files
from npo_platform.settings import PlatformSettings

# The query service's own token signing key pair (QUERY_SIGNING_KEY_PATH), apart from the issuer's:
# docker-compose.yml mounts it from .npo/keys, deploy/k8s makes its Secrets of another one.
QUERY_KEY_NAME = "query-ed25519"
QUERY_PRIVATE_KEY_FILE, QUERY_PUBLIC_KEY_FILE = keypair_files(QUERY_KEY_NAME)


def ensure_query_keypair(keys_dir: Path) -> tuple[Path, Path]:
    """The query's key pair in ``keys_dir``, made when missing. Its private key is readable by
    the compose file's query container (another uid, bind-mounted); ``keys_dir`` itself stays
    the owner's alone (0700), so no other local user reaches it."""
    private, public = ensure_local_keypair(keys_dir, QUERY_KEY_NAME)
    private.chmod(0o644)
    return private, public


# The local stack's demonstration users: a clinician at a unit of the simulated Östergötland,
# a compliance officer, a patient, an operator and an administrator.
DEMO_UNIT, DEMO_GIVER = "SE2321000503-VE001", "SE2321000503-VG"


def demo_people(patient: str = "191212121212") -> dict[Role, Principal]:
    """One person per role the views are for; ``patient`` is the patient's own personnummer."""
    return {
        Role.CLINICIAN: Principal(sub="SE2321000503-L001", name="Dr Lisa Lind", roles=frozenset(
            {Role.CLINICIAN}), care_unit=DEMO_UNIT, care_giver=DEMO_GIVER, assignment="A1",
            purpose="care", title="Läkare"),
        Role.COMPLIANCE_OFFICER: Principal(sub="SE2321000503-C001", name="Cecilia Controller",
                                           roles=frozenset({Role.COMPLIANCE_OFFICER})),
        Role.PATIENT: Principal(sub="patient-demo", name="Tolvan Tolvansson",
                                roles=frozenset({Role.PATIENT}), patient=patient),
        Role.OPERATOR: Principal(sub="SE2321000016-OP01", name="Olle Operator",
                                 roles=frozenset({Role.OPERATOR})),
        Role.ADMIN: Principal(sub="SE2321000016-AD01", name="Ada Admin", roles=frozenset({Role.ADMIN})),
    }


token_app = typer.Typer(help="Development tokens signed by the local issuer (never in production).")

Text = Annotated[str | None, typer.Option()]


@token_app.command("issue")
def issue(
    role: Annotated[list[Role], typer.Option(help="repeat for several roles")],
    user: Annotated[str, typer.Option(help="HSA-id of the user or system")] = "SE2321000016-DEV1",
    name: Annotated[str, typer.Option()] = "Developer",
    care_unit: Text = None,
    care_giver: Annotated[str | None, typer.Option(
        help="a clinician's care giver; a producer's: the data controller it publishes for")] = None,
    assignment: Text = None,
    purpose: Text = None,
    title: Text = None,
    patient: Annotated[str | None, typer.Option(help="the patient role's own personnummer")] = None,
    logical_address: Annotated[list[str] | None, typer.Option(help="a producer's own addresses")] = None,
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 8 * 60,
) -> None:
    """Print a token with the given claims (a clinician needs unit, giver, assignment, purpose; a
    producer its care giver and logical addresses)."""
    try:
        principal = Principal(
            sub=user, name=name, roles=frozenset(role), care_unit=care_unit, care_giver=care_giver,
            assignment=assignment, purpose=purpose, title=title, patient=patient,
            logical_addresses=frozenset(logical_address or ()),
        )
    except ValidationError as error:
        messages = "; ".join(e["msg"] for e in error.errors())
        raise typer.BadParameter(messages) from None
    private_path, _ = ensure_local_keypair(PlatformSettings().keys_dir)
    typer.echo(issue_token(private_path.read_bytes(), principal, timedelta(minutes=ttl_minutes)))


@token_app.command("keys")
def keys() -> None:
    """Create the local issuer's key pair and the query's signing key pair (docker-compose.yml
    mounts both) if missing, and print where the issuer's public key is."""
    keys_dir = PlatformSettings().keys_dir
    _, public_path = ensure_local_keypair(keys_dir)
    ensure_query_keypair(keys_dir)
    typer.echo(str(public_path.resolve()))
