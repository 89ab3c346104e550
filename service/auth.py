"""Who is calling: a request's key (or its absence) turned into a ``Caller``.

With no live key in the pool the service is open: callers are anonymous, may do everything, and
read only the documents open to everyone; ``kpool serve`` then listens on loopback only unless
told otherwise. Once any key exists, every request needs a valid one (``Authorization: Bearer``
or ``X-API-Key``): none, an unknown or a revoked one is a 401, a role or origin that does not
allow the request a 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from indexing.errors import Forbidden, InvalidInput, Unauthenticated
from indexing.filenames import unsafe_character
from service.keys import ApiKey, Keys, Role
from service.settings import normalise_origin

#: The owner of what callers without an identity start (open mode).
ANONYMOUS = "anonymous"
#: Headers a trusted front end sets for the person it signed in.
USER_HEADER = "X-Kpool-User"
GROUPS_HEADER = "X-Kpool-Groups"
#: Longest user name a trusted front end may give (owners are stored in 200 characters).
MAX_USER_CHARS = 150


@dataclass(frozen=True)
class Caller:
    """Who asks. Conversations belong to ``owner``; ``groups`` are the document groups they may
    read (``None``: every document, for the CLI run by an administrator); ``role`` is ``None``
    when the service is open (no keys), where every endpoint is allowed."""

    owner: str = ANONYMOUS
    groups: Sequence[str] | None = None
    role: Role | None = None
    key_id: str | None = None

    def allowed(self, roles: Sequence[Role]) -> bool:
        return self.role is None or self.role in roles


OPEN_CALLER = Caller(owner=ANONYMOUS, groups=())


def presented_secret(authorization: str | None, api_key: str | None) -> str | None:
    """The secret from ``Authorization: Bearer ...`` or ``X-API-Key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
        return value.strip()
    return api_key.strip() if api_key and api_key.strip() else None


def authenticate(
    keys: Keys,
    *,
    secret: str | None,
    origin: str | None,
    user: str | None = None,
    groups: str | None = None,
) -> Caller:
    """The caller a request's credentials make; raises ``Unauthenticated``/``Forbidden``."""
    if secret is None:
        if keys.any_live():
            raise Unauthenticated(
                "this service needs an API key: send it as 'Authorization: Bearer <key>'"
            )
        return OPEN_CALLER
    key = keys.find(secret)
    if key is None:
        raise Unauthenticated("the API key is not valid (unknown or revoked)")
    if key.role == "widget":
        _check_origin(key, origin)
    return _caller(key, user, groups)


def _check_origin(key: ApiKey, origin: str | None) -> None:
    try:
        normalised = normalise_origin(origin) if origin else None
    except ValueError:
        normalised = None
    if normalised not in key.origins:
        shown = origin or "no origin"
        raise Forbidden(f"this widget key may only be used from its own pages, not from {shown}")


def _caller(key: ApiKey, user: str | None, groups: str | None) -> Caller:
    role: Role = key.role  # type: ignore[assignment]  # checked when the key was made
    if key.trusted_front_end and user is not None:
        # Named, even blank: a front end speaking for nobody must not read as the key itself
        # (for an admin key, every document).
        named = [g.strip() for g in _header_text(groups or "").split(",") if g.strip()]
        return Caller(owner=f"{key.id}:{_user(user)}", groups=named, role=role, key_id=key.id)
    # Admin keys manage every document, so they read every document.
    readable = None if role == "admin" else list(key.groups)
    return Caller(owner=key.id, groups=readable, role=role, key_id=key.id)


def _header_text(value: str) -> str:
    """A header's text. HTTP hands headers over as Latin-1, so a front end's UTF-8 ("Łukasz",
    "李明") arrives as other characters, some of them controls: read it as UTF-8 when it is."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _user(given: str) -> str:
    user = _header_text(given).strip()
    if not user:
        raise InvalidInput(f"{USER_HEADER} is blank; name the user, or leave the header out")
    if len(user) > MAX_USER_CHARS:
        raise InvalidInput(f"{USER_HEADER} is {len(user)} characters; at most {MAX_USER_CHARS}")
    problem = unsafe_character(user)
    if problem is not None:
        raise InvalidInput(f"{USER_HEADER} contains {problem}")
    return user
