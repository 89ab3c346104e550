"""Service API keys: who may call the HTTP API, in which role, reading which groups.

* ``admin`` keys manage documents and may do everything else;
* ``user`` keys ask and route (and list the documents they may read);
* ``widget`` keys only ask, only from the origins they are bound to, and are safe to put in a
  page: whoever reads one from the page can do no more than the widget does.

A key is shown once, when it is created; the store keeps the SHA-256 of it (the secret is 256
random bits, so a slow password hash would add nothing) and a short prefix to recognise it by.
A user key marked as a *trusted front end* (a portal that signs its users in) may name the user
and their groups in request headers; any other key's groups are its own.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, col, select

from indexing.errors import InvalidInput, KeyNotFound
from indexing.filenames import check_labels, unsafe_character
from indexing.models import UTCDateTime, utcnow
from indexing.store import Store
from service.settings import normalise_origin

Role = Literal["admin", "user", "widget"]
ROLES: tuple[Role, ...] = get_args(Role)

SECRET_PREFIX = "kp_"
#: Longest name a key may be given.
MAX_NAME_CHARS = 200


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(default="", max_length=200)
    role: str = Field(max_length=20)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    origins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    trusted_front_end: bool = False
    secret_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=20)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )

    def public(self) -> dict[str, Any]:
        """Everything about the key but its secret."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "groups": self.groups,
            "origins": self.origins,
            "trusted_front_end": self.trusted_front_end,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Keys:
    """The keys stored in the pool's database."""

    store: Store

    def create(
        self,
        *,
        role: str,
        name: str = "",
        groups: Sequence[str] = (),
        origins: Sequence[str] = (),
        trusted_front_end: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the caller)."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if role == "widget" and not origins:
            raise InvalidInput("a widget key needs the origins of the pages that embed it")
        if role != "widget" and origins:
            raise InvalidInput("only widget keys are bound to origins")
        if trusted_front_end and role == "widget":
            raise InvalidInput("a widget key is public, so it cannot be a trusted front end")
        check_labels((), groups)
        problem = unsafe_character(name)
        if problem is not None:
            raise InvalidInput(f"the key's name contains {problem}")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidInput(
                f"the key's name is {len(name)} characters; at most {MAX_NAME_CHARS}"
            )
        try:
            bound = sorted({normalise_origin(origin) for origin in origins})
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            role=role,
            groups=sorted({g.strip() for g in groups if g.strip()}),
            origins=bound,
            trusted_front_end=trusted_front_end,
            secret_hash=hash_secret(secret),
            prefix=secret[: len(SECRET_PREFIX) + 6],
        )
        with self.store.writing() as session:
            session.add(key)
        return key, secret

    def find(self, secret: str) -> ApiKey | None:
        """The live key with this secret, if any."""
        query = select(ApiKey).where(
            ApiKey.secret_hash == hash_secret(secret), col(ApiKey.revoked_at).is_(None)
        )
        with self.store.session() as session:
            return session.exec(query).first()

    def any_live(self) -> bool:
        query = select(ApiKey.id).where(col(ApiKey.revoked_at).is_(None)).limit(1)
        with self.store.session() as session:
            return session.exec(query).first() is not None

    def widget_origins(self) -> set[str]:
        """The origins every live widget key is bound to."""
        query = select(ApiKey.origins).where(
            ApiKey.role == "widget", col(ApiKey.revoked_at).is_(None)
        )
        with self.store.session() as session:
            return {origin for origins in session.exec(query).all() for origin in origins}

    def list(self) -> list[ApiKey]:
        with self.store.session() as session:
            return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good; revoking it again changes nothing."""
        with self.store.writing() as session:
            key = session.get(ApiKey, key_id)
            if key is None:
                raise KeyNotFound(f"no API key with id {key_id!r}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                session.add(key)
            return key
