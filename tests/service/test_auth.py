"""API keys and roles: once a key exists nobody gets in without one; each role reaches exactly
its endpoints; widget keys only from their origins; revoked keys are refused at once."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from indexing.errors import ConfigurationError
from indexing.pool import Pool
from service.app import create_app
from service.audit import AuditLog
from service.cli import check_exposure, main
from service.keys import Keys
from service.settings import Settings

INTRANET = "https://intranet.example.com"
ELSEWHERE = "https://elsewhere.example.com"
RESTRICTED_QUESTION = "pay review salary bands"
RESTRICTED_TITLE = "Pay Review Procedure"


@dataclass(frozen=True)
class Secrets:
    admin: str
    user: str
    hr_user: str
    widget: str
    front_end: str
    revoked: str
    revoked_id: str


@pytest.fixture
def secrets(sample_pool: Pool) -> Secrets:
    keys = Keys(sample_pool.store)
    revoked, revoked_secret = keys.create(role="user")
    keys.revoke(revoked.id)
    return Secrets(
        admin=keys.create(role="admin", name="ops")[1],
        user=keys.create(role="user")[1],
        hr_user=keys.create(role="user", groups=["hr"])[1],
        widget=keys.create(role="widget", origins=[INTRANET])[1],
        front_end=keys.create(role="user", trusted_front_end=True)[1],
        revoked=revoked_secret,
        revoked_id=revoked.id,
    )


@pytest.fixture
def keyed(client: TestClient, secrets: Secrets) -> TestClient:
    return client


def bearer(secret: str, origin: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {secret}"}
    if origin:
        headers["Origin"] = origin
    return headers


# ---------------------------------------------------------------------- the role matrix

ADMIN, USER, WIDGET = "admin", "user", "widget"
Call = tuple[str, str]

ASK: Call = ("POST", "/v1/ask")
ROUTE: Call = ("POST", "/v1/route")
INFO: Call = ("GET", "/v1/info")
CONVERSATION: Call = ("GET", "/v1/conversations/conv_unknown")
FORGET: Call = ("DELETE", "/v1/conversations/conv_unknown")
LIST: Call = ("GET", "/v1/documents")
SHOW: Call = ("GET", "/v1/documents/{doc}")
EDIT: Call = ("PUT", "/v1/documents/{doc}")
REMOVE: Call = ("DELETE", "/v1/documents/{doc}")
UPLOAD: Call = ("POST", "/v1/documents")
AUDIT: Call = ("GET", "/v1/audit")
BODIES: dict[Call, dict[str, Any]] = {
    ASK: {"question": "how many days of annual leave?"},
    ROUTE: {"question": "annual leave"},
    EDIT: {"tags": ["edited"]},
}
NOTE = ("note.md", b"# Note\n\nA short note about parking bays.", "text/markdown")

#: Who may make each call (a refused role gets 403; a missing or bad key 401).
MATRIX: dict[Call, set[str]] = {
    ASK: {ADMIN, USER, WIDGET},
    INFO: {ADMIN, USER, WIDGET},
    CONVERSATION: {ADMIN, USER, WIDGET},
    FORGET: {ADMIN, USER, WIDGET},
    ROUTE: {ADMIN, USER},
    LIST: {ADMIN, USER},
    SHOW: {ADMIN, USER},
    EDIT: {ADMIN},
    REMOVE: {ADMIN},
    UPLOAD: {ADMIN},
    AUDIT: {ADMIN},
}
PUBLIC = ["/healthz", "/readyz", "/", "/admin", "/widget.js"]


def call(client: TestClient, pool: Pool, what: Call, headers: dict[str, str]) -> Any:
    method, path = what
    public_doc = next(d for d in pool.store.list_documents(limit=100)[0] if not d.groups)
    path = path.format(doc=public_doc.id)
    if what == UPLOAD:
        return client.post(path, files={"file": NOTE}, headers=headers)
    return client.request(method, path, json=BODIES.get(what), headers=headers)


@pytest.mark.parametrize("what", list(MATRIX), ids=lambda c: f"{c[0]} {c[1]}")
@pytest.mark.parametrize("role", [ADMIN, USER, WIDGET])
def test_each_role_reaches_exactly_its_endpoints(
    keyed: TestClient, sample_pool: Pool, secrets: Secrets, role: str, what: Call
) -> None:
    secret = {ADMIN: secrets.admin, USER: secrets.user, WIDGET: secrets.widget}[role]
    response = call(keyed, sample_pool, what, bearer(secret, INTRANET if role == WIDGET else None))
    if role in MATRIX[what]:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500
    else:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "forbidden"


@pytest.mark.parametrize("what", list(MATRIX), ids=lambda c: f"{c[0]} {c[1]}")
@pytest.mark.parametrize(
    "credentials",
    ["none", "unknown", "revoked", "malformed"],
)
def test_every_endpoint_needs_a_valid_key_once_one_exists(
    keyed: TestClient, sample_pool: Pool, secrets: Secrets, what: Call, credentials: str
) -> None:
    headers = {
        "none": {},
        "unknown": bearer("kp_not-a-key"),
        "revoked": bearer(secrets.revoked),
        "malformed": {"Authorization": f"Basic {secrets.admin}"},
    }[credentials]
    response = call(keyed, sample_pool, what, headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert secrets.admin not in response.text


@pytest.mark.parametrize("path", PUBLIC)
def test_health_and_the_pages_need_no_key(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_the_key_may_also_come_as_x_api_key(keyed: TestClient, secrets: Secrets) -> None:
    response = keyed.post("/v1/route", json=BODIES[ROUTE], headers={"X-API-Key": secrets.user})
    assert response.status_code == 200


# ---------------------------------------------------------------------- widget keys


@pytest.mark.parametrize("origin", [ELSEWHERE, None, "null"])
def test_a_widget_key_is_refused_outside_its_origins(
    keyed: TestClient, secrets: Secrets, origin: str | None
) -> None:
    headers = bearer(secrets.widget, origin)
    response = keyed.post("/v1/ask", json=BODIES[ASK], headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["type"] in ("forbidden", "origin_not_allowed")


def test_a_widget_keys_origin_may_call_across_origins(keyed: TestClient, secrets: Secrets) -> None:
    preflight = keyed.options(
        "/v1/ask",
        headers={"Origin": INTRANET, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == INTRANET
    response = keyed.post("/v1/ask", json=BODIES[ASK], headers=bearer(secrets.widget, INTRANET))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == INTRANET


def test_a_user_key_from_an_unlisted_origin_is_still_refused_by_the_origin_policy(
    keyed: TestClient, secrets: Secrets
) -> None:
    response = keyed.post("/v1/ask", json=BODIES[ASK], headers=bearer(secrets.user, ELSEWHERE))
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "origin_not_allowed"


# ---------------------------------------------------------------------- groups and identity


def routed_titles(client: TestClient, headers: dict[str, str]) -> set[str]:
    response = client.post("/v1/route", json={"question": RESTRICTED_QUESTION}, headers=headers)
    assert response.status_code == 200, response.text
    return {d["title"] for d in response.json()["documents"]}


def test_a_keys_groups_decide_what_it_reads(keyed: TestClient, secrets: Secrets) -> None:
    assert RESTRICTED_TITLE not in routed_titles(keyed, bearer(secrets.user))
    assert RESTRICTED_TITLE in routed_titles(keyed, bearer(secrets.hr_user))
    assert RESTRICTED_TITLE in routed_titles(keyed, bearer(secrets.admin))


def test_a_trusted_front_end_names_the_user_and_their_groups(
    keyed: TestClient, secrets: Secrets
) -> None:
    as_ann = {**bearer(secrets.front_end), "X-Kpool-User": "ann", "X-Kpool-Groups": "hr, legal"}
    assert RESTRICTED_TITLE in routed_titles(keyed, as_ann)
    as_bob = {**bearer(secrets.front_end), "X-Kpool-User": "bob"}
    assert RESTRICTED_TITLE not in routed_titles(keyed, as_bob)


def test_an_admin_front_end_lists_only_what_the_named_user_may_read(
    keyed: TestClient, sample_pool: Pool
) -> None:
    restricted = next(d for d in sample_pool.store.list_documents(limit=100)[0] if d.groups)
    admin_front_end = Keys(sample_pool.store).create(role="admin", trusted_front_end=True)[1]

    def listed(**named: str) -> set[str]:
        headers = {**bearer(admin_front_end), **named}
        page = keyed.get("/v1/documents?limit=100", headers=headers).json()
        return {d["id"] for d in page["data"]}

    assert restricted.id not in listed(**{"X-Kpool-User": "bob"})
    assert restricted.id in listed(**{"X-Kpool-User": "ann", "X-Kpool-Groups": "hr"})
    assert restricted.id in listed()  # speaking for nobody, the key reads as an admin
    as_bob = {**bearer(admin_front_end), "X-Kpool-User": "bob"}
    shown = keyed.get(f"/v1/documents/{restricted.id}", headers=as_bob)
    assert shown.status_code == 404


@pytest.mark.parametrize(
    ("user", "needle"),
    [
        ("a" * 151, "at most 150"),
        ("ann\tlee", "a control character (U+0009)"),
        ("   ", "is blank"),
        ("", "is blank"),
    ],
)
def test_a_front_end_user_name_that_cannot_be_kept_is_400(
    keyed: TestClient, secrets: Secrets, sample_pool: Pool, user: str, needle: str
) -> None:
    audited = len(AuditLog(sample_pool.store).entries(limit=1000))
    headers = {**bearer(secrets.front_end), "X-Kpool-User": user}

    response = keyed.post("/v1/ask", json={"question": "annual leave"}, headers=headers)

    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    assert len(AuditLog(sample_pool.store).entries(limit=1000)) == audited


@pytest.mark.parametrize("name", ["Łukasz", "李明", "Öz Martínez", "Jürgen"])
def test_a_front_end_names_users_and_groups_in_utf_8(
    keyed: TestClient, secrets: Secrets, sample_pool: Pool, name: str
) -> None:
    restricted = next(d for d in sample_pool.store.list_documents(limit=100)[0] if d.groups)
    group = "équipe-" + restricted.groups[0]
    sample_pool.store.update_metadata(document_id=restricted.id, groups=[group])
    sample_pool.refresh()
    headers = {
        **bearer(secrets.front_end),
        "X-Kpool-User": name.encode(),  # as a front end sends them: the bytes of UTF-8
        "X-Kpool-Groups": f"staff, {group}".encode(),
    }

    response = keyed.get(f"/v1/documents/{restricted.id}", headers=headers)
    asked = keyed.post("/v1/ask", json={"question": "annual leave"}, headers=headers)

    assert response.status_code == 200
    assert asked.status_code == 200
    assert AuditLog(sample_pool.store).entries(limit=1)[0].owner.endswith(":" + name)


def test_the_longest_front_end_user_name_is_answered_and_audited(
    keyed: TestClient, secrets: Secrets, sample_pool: Pool
) -> None:
    headers = {**bearer(secrets.front_end), "X-Kpool-User": "a" * 150}

    response = keyed.post("/v1/ask", json={"question": "annual leave"}, headers=headers)

    assert response.status_code == 200
    assert AuditLog(sample_pool.store).entries(limit=1)[0].owner.endswith(":" + "a" * 150)


def test_an_untrusted_key_cannot_claim_groups_by_header(
    keyed: TestClient, secrets: Secrets
) -> None:
    claimed = {**bearer(secrets.user), "X-Kpool-User": "eve", "X-Kpool-Groups": "hr"}
    assert RESTRICTED_TITLE not in routed_titles(keyed, claimed)


def test_document_listings_show_only_what_the_key_may_read(
    keyed: TestClient, sample_pool: Pool, secrets: Secrets
) -> None:
    restricted = next(d for d in sample_pool.store.list_documents(limit=100)[0] if d.groups)

    def listed(secret: str) -> set[str]:
        page = keyed.get("/v1/documents?limit=100", headers=bearer(secret)).json()
        return {d["id"] for d in page["data"]}

    assert restricted.id not in listed(secrets.user)
    assert restricted.id in listed(secrets.hr_user) and restricted.id in listed(secrets.admin)
    hidden = keyed.get(f"/v1/documents/{restricted.id}", headers=bearer(secrets.user))
    missing = keyed.get("/v1/documents/doc_missing", headers=bearer(secrets.user))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found"


def test_conversations_belong_to_their_caller(keyed: TestClient, secrets: Secrets) -> None:
    mine = keyed.post("/v1/ask", json=BODIES[ASK], headers=bearer(secrets.user)).json()
    url = f"/v1/conversations/{mine['conversation_id']}"
    assert keyed.get(url, headers=bearer(secrets.user)).status_code == 200
    assert keyed.get(url, headers=bearer(secrets.hr_user)).status_code == 404
    as_ann = {**bearer(secrets.front_end), "X-Kpool-User": "ann"}
    as_bob = {**bearer(secrets.front_end), "X-Kpool-User": "bob"}
    anns = keyed.post("/v1/ask", json=BODIES[ASK], headers=as_ann).json()["conversation_id"]
    assert keyed.get(f"/v1/conversations/{anns}", headers=as_ann).status_code == 200
    assert keyed.get(f"/v1/conversations/{anns}", headers=as_bob).status_code == 404
    follow_up = {"question": "and for part-time staff?", "conversation_id": anns}
    assert keyed.post("/v1/ask", json=follow_up, headers=as_bob).status_code == 404


# ---------------------------------------------------------------------- the CLI and the store


@pytest.fixture
def home(tmp_path: Path, sample_home: Path) -> Path:
    shutil.copytree(sample_home, tmp_path / "home")
    return tmp_path / "home"


def kpool(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env={"KPOOL_HOME": str(home)})
    return result


def test_keys_are_created_listed_and_revoked_from_the_cli(home: Path) -> None:
    created = kpool(home, "keys", "create", "--role", "user", "--group", "hr,legal", "--json")
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    assert {"key", "id", "role"} <= set(key) and key["role"] == "user"
    assert key["groups"] == ["hr", "legal"]
    settings = Settings(home=home)
    with TestClient(create_app(settings)) as client:
        ok = client.post("/v1/route", json=BODIES[ROUTE], headers=bearer(key["key"]))
        assert ok.status_code == 200
        listed = kpool(home, "keys", "list", "--json")
        assert key["key"] not in listed.stdout
        assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
        assert kpool(home, "keys", "revoke", key["id"]).exit_code == 0
        refused = client.post("/v1/route", json=BODIES[ROUTE], headers=bearer(key["key"]))
        assert refused.status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "widget"], "needs the origins"),
        (["--role", "user", "--origin", INTRANET], "only widget keys"),
        (["--role", "widget", "--origin", "intranet"], "is not an origin"),
        (["--role", "widget", "--origin", INTRANET, "--trusted-front-end"], "cannot be a trusted"),
        (["--role", "root"], "Invalid value for '--role'"),
        # A byte of a non-UTF-8 argument reaches Python as a lone surrogate.
        (["--role", "user", "--group", "hr\udcff"], "group 'hr\\udcff' contains a lone"),
        (["--role", "user", "--name", "ops\x00"], "name contains a control character"),
        (["--role", "user", "--name", "n" * 201], "at most 200"),
    ],
)
def test_bad_keys_are_refused_with_a_reason(home: Path, args: list[str], message: str) -> None:
    result = kpool(home, "keys", "create", *args)
    assert result.exit_code in (1, 2) and message in result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback


def test_revoking_an_unknown_key_says_so(home: Path) -> None:
    result = kpool(home, "keys", "revoke", "key_nope")
    assert result.exit_code == 1 and "no API key with id 'key_nope'" in result.output


def test_only_a_hash_of_the_secret_is_stored(home: Path) -> None:
    key = json.loads(kpool(home, "keys", "create", "--role", "admin", "--json").stdout)
    database = (home / "pool.db").read_bytes() + b"".join(
        p.read_bytes() for p in home.glob("pool.db-*")
    )
    assert key["key"].encode() not in database


# ---------------------------------------------------------------------- secure by default


@pytest.mark.parametrize(
    ("host", "has_keys", "allow", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("localhost", False, False, False),
        ("::1", False, False, False),
        ("0.0.0.0", False, False, True),
        ("10.1.2.3", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
    ],
)
def test_an_open_service_listens_on_loopback_only_unless_told(
    tmp_path: Path, host: str, has_keys: bool, allow: bool, refused: bool
) -> None:
    settings = Settings(home=tmp_path, allow_no_auth=allow)
    if refused:
        with pytest.raises(ConfigurationError, match="KPOOL_ALLOW_NO_AUTH"):
            check_exposure(host, has_keys, settings)
    else:
        check_exposure(host, has_keys, settings)


def test_kpool_serve_refuses_a_public_interface_without_keys(home: Path) -> None:
    result = kpool(home, "serve", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0 with no API keys" in result.output


def test_without_keys_the_service_stays_open_to_loopback_callers(client: TestClient) -> None:
    assert client.post("/v1/route", json=BODIES[ROUTE]).status_code == 200
    assert client.get("/v1/documents").status_code == 200
