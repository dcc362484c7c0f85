"""Identity: EdDSA-signed tokens with HSA-style claims and the FastAPI dependencies checking them.

Contract for services: ``create_app()`` puts a ``TokenVerifier`` on ``app.state.token_verifier``
and calls ``problems.install_problem_handlers(app)``. Routes then take ``BearerClaims`` (any
valid token) or ``require_roles(...)`` / one of the role aliases such as ``ClinicianClaims``.
A missing or invalid token is answered 401 with ``WWW-Authenticate: Bearer``; a token without
any of the required roles is answered 403 ``role.missing``. No role implies another.

The local development issuer (``ensure_local_keypair`` and ``issue_token``) signs with an
Ed25519 key kept in ``PlatformSettings.keys_dir``. A platform service may sign its own system
tokens with a key of its own (the query service's); verifiers trust such a *service key*
(``NPO_JWT_SERVICE_KEY_PATHS``) for tokens whose only role is ``system``, so a service's key
never mints a clinician's or an officer's token.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)
from starlette.types import Scope

from npo_platform.identifiers import HsaId, PatientId
from npo_platform.problems import Problem
from npo_platform.settings import PlatformSettings

ALGORITHM = "EdDSA"
LOCAL_ISSUER = "npo-local-issuer"
DEFAULT_AUDIENCE = "npo"
ISSUER_KEY_NAME = "jwt-ed25519"


def keypair_files(name: str) -> tuple[str, str]:
    """The file names of the key pair ``name`` (``ensure_local_keypair``): private, public."""
    return f"{name}-private.pem", f"{name}-public.pem"


PRIVATE_KEY_FILE, PUBLIC_KEY_FILE = keypair_files(ISSUER_KEY_NAME)
PURPOSE_CARE = "care"  # vård och behandling


class Role(StrEnum):
    CLINICIAN = "clinician"
    PRODUCER = "producer"
    COMPLIANCE_OFFICER = "compliance_officer"
    PATIENT = "patient"
    OPERATOR = "operator"
    ADMIN = "admin"
    # A platform service calling another service or a producer on its own behalf (the query
    # service asking the index, a producer system answering the platform); sub is its HSA-id.
    SYSTEM = "system"


def _hsa_id(value: str) -> str:
    return HsaId.parse(value).value


def _patient_id(value: str) -> str:
    return PatientId.parse(value).value


HsaIdStr = Annotated[str, AfterValidator(_hsa_id)]
PatientIdStr = Annotated[str, AfterValidator(_patient_id)]


class Principal(BaseModel):
    """Who a token speaks for: the user (or system) and the assignment they act under."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(min_length=1)  # HSA-id for staff and systems; opaque for a patient
    name: str = Field(min_length=1)
    roles: frozenset[Role] = Field(min_length=1)
    care_unit: HsaIdStr | None = None
    care_giver: HsaIdStr | None = None
    assignment: str | None = None  # medarbetaruppdrag
    purpose: str | None = None  # e.g. PURPOSE_CARE
    title: str | None = None
    patient: PatientIdStr | None = Field(default=None, repr=False)  # the patient role's own id
    logical_addresses: frozenset[str] = frozenset()  # what a producer may publish for
    # The client system the token was issued to, when the issuer says: RFC 9068's client_id, else
    # OpenID Connect's azp (authorised party); the request guard limits each one's rate.
    client_id: str | None = Field(default=None, min_length=1, max_length=200,
                                  validation_alias=AliasChoices("client_id", "azp"))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.roles - {Role.PATIENT}:
            _hsa_id(self.sub)
        if Role.CLINICIAN in self.roles and None in (
            self.care_unit,
            self.care_giver,
            self.assignment,
            self.purpose,
        ):
            raise ValueError("a clinician needs care_unit, care_giver, assignment and purpose")
        if Role.PATIENT in self.roles and self.patient is None:
            raise ValueError("the patient role needs the patient claim")
        if Role.PRODUCER in self.roles and self.care_giver is None:
            raise ValueError("a producer names its care giver (the data controller it publishes for)")
        if self.patient is not None and self.sub == self.patient:
            raise ValueError("sub must not be a personal identity number")
        return self

    @field_serializer("roles", "logical_addresses")
    def _sorted(self, values: frozenset[str]) -> list[str]:
        return sorted(values)

    @property
    def patient_id(self) -> PatientId | None:
        return None if self.patient is None else PatientId(self.patient)


class Claims(Principal):
    """A verified token: the principal plus the registered JWT claims."""

    iss: str
    aud: str
    iat: int
    exp: int
    jti: str = Field(min_length=1)


class InvalidToken(Exception):
    """A token that cannot be trusted; ``code`` is one of ``token.*``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as PEM bytes (private PKCS#8, public SubjectPublicKeyInfo)."""
    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, _public_pem(private)


_NOT_OURS = 0o027  # write for the group, anything for others (0440 is a Secret with fsGroup)


def ensure_local_keypair(keys_dir: Path, name: str = ISSUER_KEY_NAME) -> tuple[Path, Path]:
    """Create the Ed25519 key pair ``<name>-private.pem``/``-public.pem`` in ``keys_dir`` unless
    it exists (the development token issuer's by default; the audit checkpoint key too).

    Safe when several processes start at once: the private key is published with an exclusive
    link (the first one wins) and the public key is always derived from it.
    """
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = (keys_dir / file for file in keypair_files(name))
    if not private_path.exists():
        _publish_exclusively(private_path, generate_keypair()[0])
    if private_path.stat().st_mode & _NOT_OURS:
        private_path.chmod(0o600)  # a key left readable by others; a mounted Secret is read-only
    if not public_path.exists():
        _write_atomically(public_path, _public_pem(private_path.read_bytes()))
    return private_path, public_path


def ensure_secret(keys_dir: Path, name: str, make: Callable[[], bytes]) -> bytes:
    """The secret in ``keys_dir/name``, made by ``make`` on first need (mode 0600); the first of
    several processes starting at once wins, and none reads a half-written file."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / name
    if not path.exists():
        _publish_exclusively(path, make())
    return path.read_bytes()


def _publish_exclusively(path: Path, content: bytes) -> None:
    tmp = _write_temp(path.parent, content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first; theirs is as good
    finally:
        tmp.unlink()


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = _write_temp(path.parent, content)
    tmp.chmod(0o644)
    tmp.replace(path)


def _write_temp(directory: Path, content: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # mode 0600
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    return Path(name)


def _public_pem(private_key_pem: bytes) -> bytes:
    return (
        _load_private_key(private_key_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key")
    return key


def _load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the verification key must be an Ed25519 public key")
    return key


class KeySettingError(RuntimeError):
    """A configured key file that is missing, unreadable, or not an Ed25519 key of its kind; the
    message names the setting, so a start-up failure says what to fix."""


def read_key_file(path: Path, setting: str, *, private: bool) -> bytes:
    """The PEM in ``path`` once it is an Ed25519 private (or public) key; else KeySettingError."""
    kind = "private" if private else "public"
    try:
        pem = path.read_bytes()
        (_load_private_key if private else _load_public_key)(pem)
    except OSError as error:
        raise KeySettingError(f"{setting}: cannot read {path} ({error.strerror})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeySettingError(f"{setting}: {path} is not an Ed25519 {kind} key (PEM)") from None
    return pem


def issue_token(
    private_key_pem: bytes,
    principal: Principal,
    ttl: timedelta,
    *,
    issuer: str = LOCAL_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: datetime | None = None,
) -> str:
    """Sign a token for ``principal`` valid for ``ttl`` from ``now``."""
    issued = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        **principal.model_dump(mode="json", exclude_none=True),
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, _load_private_key(private_key_pem), algorithm=ALGORITHM)


_PYJWT_ERRORS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token.expired"),
    (jwt.InvalidSignatureError, "token.signature"),
    (jwt.InvalidAudienceError, "token.audience"),
    (jwt.InvalidIssuerError, "token.issuer"),
    (jwt.MissingRequiredClaimError, "token.claims"),
    (jwt.ImmatureSignatureError, "token.not_yet_valid"),
    (jwt.InvalidAlgorithmError, "token.algorithm"),
    (jwt.DecodeError, "token.malformed"),
)


class TokenVerifier:
    """Checks signature, issuer, audience, lifetime and claim shape of a token.

    ``service_keys``: public keys of platform services signing their own system tokens; a token
    one of them signs is valid only when ``system`` is its one role (401 ``token.signer``).
    """

    def __init__(
        self,
        public_key_pem: bytes,
        issuer: str = LOCAL_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway: timedelta = timedelta(seconds=30),
        service_keys: Sequence[bytes] = (),
    ) -> None:
        self._key = _load_public_key(public_key_pem)
        self._service_keys = tuple(_load_public_key(pem) for pem in service_keys)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    @property
    def audience(self) -> str:
        """The audience a token must name unless a request asks for another."""
        return self._audience

    def verify(self, token: str, audience: str | None = None) -> Claims:
        """The token's claims when it is valid for ``audience`` (default: this verifier's)."""
        payload, by_service = self._decode(token, audience or self._audience)
        try:
            claims = Claims.model_validate(payload)
        except ValidationError as error:
            fields = sorted({".".join(map(str, e["loc"])) or "token" for e in error.errors()})
            raise InvalidToken("token.claims", f"missing or invalid claims: {fields}") from None
        if by_service and claims.roles != {Role.SYSTEM}:
            raise InvalidToken("token.signer", "a service key signs system tokens only")
        return claims

    def _decode(self, token: str, audience: str) -> tuple[dict[str, Any], bool]:
        """The payload, and whether a service key (not the issuer's) signed it."""
        try:
            return self._decode_with(self._key, token, audience), False
        except InvalidToken as error:
            if error.code != "token.signature" or not self._service_keys:
                raise
            unsigned = error
        for key in self._service_keys:
            try:
                return self._decode_with(key, token, audience), True
            except InvalidToken as error:
                if error.code != "token.signature":
                    raise  # this key signed it, and it is invalid for another reason
        raise unsigned

    def _decode_with(self, key: Ed25519PublicKey, token: str, audience: str) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=audience,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "iat", "exp", "sub", "jti"]},
            )
        except jwt.InvalidTokenError as error:
            code = next((c for t, c in _PYJWT_ERRORS if isinstance(error, t)), "token.invalid")
            raise InvalidToken(code, str(error)) from None
        return payload


class CachingTokenVerifier(TokenVerifier):
    """Delegates to ``inner`` and remembers up to ``size`` verified tokens until they expire.

    Services see the same token again and again (the query service forwards each clinician's
    token with every call); a token's bytes verify the same way until ``exp``, so the claims
    are kept, keyed by the exact token, and an Ed25519 check is saved per request.
    """

    def __init__(self, inner: TokenVerifier, size: int = 4096) -> None:
        # Deliberately not calling TokenVerifier.__init__: every check is the inner verifier's.
        self._inner = inner
        self._size = size
        self._claims: OrderedDict[str, Claims] = OrderedDict()

    @property
    def audience(self) -> str:
        return self._inner.audience

    def verify(self, token: str, audience: str | None = None) -> Claims:
        cached = self._claims.get(token)
        if cached is not None and cached.exp > time.time():
            if cached.aud != (audience or self._inner.audience):
                raise InvalidToken("token.audience", "Audience doesn't match")
            self._claims.move_to_end(token)
            return cached
        claims = self._inner.verify(token, audience)  # raises InvalidToken; nothing cached then
        self._claims[token] = claims
        if len(self._claims) > self._size:
            self._claims.popitem(last=False)
        return claims


def load_token_verifier(
    settings: PlatformSettings, *, issuer: str = LOCAL_ISSUER, audience: str = DEFAULT_AUDIENCE
) -> TokenVerifier:
    """The verifier for ``settings.jwt_public_key_path``, or the local issuer's public key, and
    the service keys of ``settings.jwt_service_key_paths``.

    A missing issuer key raises FileNotFoundError (the service then refuses every request);
    a configured service key that is missing or no Ed25519 public key raises KeySettingError.
    """
    path = settings.jwt_public_key_path or settings.keys_dir / PUBLIC_KEY_FILE
    issuer_key = path.read_bytes()
    service_keys = [read_key_file(p, "NPO_JWT_SERVICE_KEY_PATHS", private=False)
                    for p in settings.jwt_service_key_paths]
    return TokenVerifier(issuer_key, issuer=issuer, audience=audience, service_keys=service_keys)


_bearer = HTTPBearer(auto_error=False)
# The claims the platform's request guard verified for this request (npo_platform.guard).
CLAIMS_SCOPE_KEY = "npo.claims"
# ``app.state.token_audience``: the audience a request's token must name (a service whose
# routes answer tokens bound to them, e.g. a producer's); absent: the verifier's own.
Audience = Callable[[Scope], str]


def _unauthorized(code: str, detail: str, header: str) -> Problem:
    return Problem(401, code, detail, headers={"WWW-Authenticate": header})


def authenticate(scope: Scope, authorization: str | None) -> Claims:
    """The verified claims of a request's ``Authorization`` header value, or the Problem to
    answer (401 ``token.*``; 503 ``auth.unconfigured`` when the service has no key)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("token.missing", "A bearer token is required.", "Bearer")
    state = scope["app"].state
    verifier = getattr(state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        # Fail closed, and say why: the service was started without the issuer's public key.
        detail = "The service has no token verification key configured."
        raise Problem(503, "auth.unconfigured", detail)
    audience: Audience | None = getattr(state, "token_audience", None)
    try:
        return verifier.verify(token.strip(), audience(scope) if audience else None)
    except InvalidToken as error:
        header = f'Bearer error="invalid_token", error_description="{error.code}"'
        detail = f"The bearer token is not valid ({error.code})."
        raise _unauthorized(error.code, detail, header) from None


async def bearer_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    """The verified claims of the request's ``Authorization: Bearer`` token, or a 401 problem."""
    if credentials is None:
        raise _unauthorized("token.missing", "A bearer token is required.", "Bearer")
    guarded = request.scope.get(CLAIMS_SCOPE_KEY)
    if isinstance(guarded, Claims):  # verified by the request guard before the body was read
        return guarded
    return authenticate(request.scope, f"Bearer {credentials.credentials}")


BearerClaims = Annotated[Claims, Depends(bearer_claims)]


def require_roles(*roles: Role) -> Callable[[Claims], Awaitable[Claims]]:
    """A dependency returning the claims when the token holds at least one of ``roles``.

    Use it as ``Depends(require_roles(Role.OPERATOR))`` or through the aliases below.
    """
    if not roles:
        raise ValueError("require_roles needs at least one role")
    wanted = frozenset(roles)

    async def has_role(claims: BearerClaims) -> Claims:
        if claims.roles.isdisjoint(wanted):
            needed = ", ".join(sorted(wanted))
            raise Problem(403, "role.missing", f"This operation needs one of the roles: {needed}.")
        return claims

    return has_role


ClinicianClaims = Annotated[Claims, Depends(require_roles(Role.CLINICIAN))]
ProducerClaims = Annotated[Claims, Depends(require_roles(Role.PRODUCER))]
ComplianceOfficerClaims = Annotated[Claims, Depends(require_roles(Role.COMPLIANCE_OFFICER))]
PatientClaims = Annotated[Claims, Depends(require_roles(Role.PATIENT))]
OperatorClaims = Annotated[Claims, Depends(require_roles(Role.OPERATOR))]
AdminClaims = Annotated[Claims, Depends(require_roles(Role.ADMIN))]
SystemClaims = Annotated[Claims, Depends(require_roles(Role.SYSTEM))]
