"""The cross-origin policy: listed origins may call the API, every other origin is refused,
and same-origin or origin-less requests pass as if the policy were not there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from indexing.errors import ConfigurationError
from service import cors
from service.settings import Settings, load_settings

ALLOWED = "https://intranet.example.com"
OTHER_ALLOWED = "http://127.0.0.1:8081"


def make_app(*origins: str) -> FastAPI:
    """A small app behind the policy; ``app.state.questions`` records the questions run."""
    app = FastAPI()
    app.state.questions = []
    cors.install(app, Settings(cors_origins=origins))

    @app.post("/v1/ask")
    async def ask(response: Response) -> dict[str, str]:
        app.state.questions.append("asked")
        response.headers["X-Request-Id"] = "req_1"
        return {"answer": "Five days."}

    @app.get("/v1/busy")
    async def busy() -> Response:
        return Response(status_code=503, headers={"Retry-After": "5"})

    @app.get("/v1/negotiated")
    async def negotiated() -> Response:
        return Response(b"{}", headers={"Vary": "Accept-Encoding"})

    @app.get("/v1/events")
    async def events() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for n in range(3):
                yield f'event: text\ndata: {{"text": "{n}"}}\n\n'

        return StreamingResponse(chunks(), media_type="text/event-stream")

    @app.get("/widget.js")
    async def widget() -> Response:
        return Response(b"(function () {})();", media_type="text/javascript")

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(ALLOWED, OTHER_ALLOWED)) as test_client:
        yield test_client


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


# ---------------------------------------------------------------------------- preflights


@pytest.mark.parametrize("origin", [ALLOWED, OTHER_ALLOWED, "HTTPS://Intranet.Example.com:443"])
def test_a_preflight_from_an_allowed_origin_is_answered_with_what_the_api_uses(
    client: TestClient, origin: str
) -> None:
    response = client.options("/v1/ask", headers=preflight_headers(origin))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == origin
    assert {"GET", "POST", "DELETE", "OPTIONS"} <= _items(
        response.headers["access-control-allow-methods"]
    )
    assert {"authorization", "content-type", "accept", "last-event-id"} <= {
        item.lower() for item in _items(response.headers["access-control-allow-headers"])
    }
    assert int(response.headers["access-control-max-age"]) > 0
    assert "Origin" in _items(response.headers["vary"])
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "http://intranet.example.com",  # the allowed host, but over http
        "https://intranet.example.com:8443",  # the allowed host, another port
        "http://127.0.0.1:8082",
        "null",
    ],
)
def test_a_preflight_from_any_other_origin_is_refused(client: TestClient, origin: str) -> None:
    response = client.options("/v1/ask", headers=preflight_headers(origin))
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "origin_not_allowed"
    assert "access-control-allow-methods" not in response.headers


# ------------------------------------------------------------------------ actual requests


def test_an_allowed_origin_gets_the_answer_with_cors_headers(client: TestClient) -> None:
    response = client.post("/v1/ask", json={"question": "leave?"}, headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.json() == {"answer": "Five days."}
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in _items(response.headers["vary"])
    assert {"Retry-After", "X-Request-Id"} <= _items(
        response.headers["access-control-expose-headers"]
    )
    assert "access-control-allow-credentials" not in response.headers
    assert client.app.state.questions == ["asked"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        # What a cross-origin <form> or a fetch with no custom headers sends: no preflight.
        ("POST", "/v1/ask", {"Content-Type": "text/plain"}),
        ("POST", "/v1/ask", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("GET", "/v1/events", {}),
        ("DELETE", "/v1/ask", {}),
    ],
)
def test_a_request_from_another_origin_is_refused_before_it_runs(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(
        method,
        path,
        content=b'{"question": "leave?"}',
        headers={"Origin": "https://evil.example.com", **headers},
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "origin_not_allowed"
    assert "https://evil.example.com" in error["message"]
    assert "KPOOL_CORS_ORIGINS" in error["message"]
    assert client.app.state.questions == []  # type: ignore[attr-defined]


def test_a_refusal_is_readable_by_the_refused_page_and_varies_by_origin(
    client: TestClient,
) -> None:
    response = client.get("/v1/events", headers={"Origin": "https://evil.example.com"})
    assert response.headers["access-control-allow-origin"] == "https://evil.example.com"
    assert "Origin" in _items(response.headers["vary"])
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        "intranet.example.com",
        "ftp://intranet.example.com",
        "https://intranet.example.com/widget",
        "https://intranet.example.com:notaport",
        "https://user@intranet.example.com",
        "https://",
    ],
)
def test_a_malformed_origin_is_refused(origin: str) -> None:
    app = make_app(ALLOWED)
    with TestClient(app) as client:
        response = client.post("/v1/ask", json={"question": "leave?"}, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "origin_not_allowed"
    assert app.state.questions == []


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:8081", "http://localhost:3000", "https://intranet.example.com"]
)
def test_with_no_origins_configured_every_cross_origin_request_is_refused(origin: str) -> None:
    app = make_app()
    with TestClient(app) as client:
        preflight = client.options("/v1/ask", headers=preflight_headers(origin))
        actual = client.post("/v1/ask", json={"question": "leave?"}, headers={"Origin": origin})
    assert (preflight.status_code, actual.status_code) == (403, 403)
    assert app.state.questions == []


# ------------------------------------------------------------- what the policy leaves alone


@pytest.mark.parametrize(
    ("base_url", "origin"),
    [
        ("http://testserver", "http://testserver"),
        ("http://testserver", "http://testserver:80"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://kpool.example.com", "https://kpool.example.com"),
        ("https://kpool.example.com", "https://KPOOL.example.com:443"),
    ],
)
def test_the_service_own_pages_pass_untouched_with_no_origins_configured(
    base_url: str, origin: str
) -> None:
    app = make_app()
    with TestClient(app, base_url=base_url) as client:
        response = client.post("/v1/ask", json={"question": "leave?"}, headers={"Origin": origin})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "vary" not in response.headers
    assert app.state.questions == ["asked"]


@pytest.mark.parametrize(
    ("base_url", "origin"),
    [
        ("http://testserver", "https://testserver"),  # same host, other scheme
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"),  # same host, other port
        ("https://kpool.example.com", "https://kpool.example.com.evil.test"),
    ],
)
def test_a_near_miss_of_the_service_own_origin_is_cross_origin(base_url: str, origin: str) -> None:
    with TestClient(make_app(), base_url=base_url) as client:
        response = client.post("/v1/ask", json={"question": "leave?"}, headers={"Origin": origin})
    assert response.status_code == 403


@pytest.mark.parametrize(("method", "path"), [("GET", "/widget.js"), ("POST", "/v1/ask")])
def test_a_request_without_origin_passes_untouched(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={"question": "leave?"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "vary" not in response.headers


def test_the_widget_script_loads_on_a_page_of_an_origin_that_is_not_allowed(
    client: TestClient,
) -> None:
    # A classic <script src> is a no-cors request: browsers send no Origin header with it.
    response = client.get("/widget.js", headers={"Referer": "https://evil.example.com/page"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")


def test_an_existing_vary_header_is_kept(client: TestClient) -> None:
    response = client.get("/v1/negotiated", headers={"Origin": ALLOWED})
    assert _items(response.headers["vary"]) == {"Accept-Encoding", "Origin"}


def test_retry_after_reaches_an_allowed_page(client: TestClient) -> None:
    response = client.get("/v1/busy", headers={"Origin": ALLOWED})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "Retry-After" in _items(response.headers["access-control-expose-headers"])


def test_a_streamed_answer_reaches_an_allowed_origin_with_cors_headers(
    client: TestClient,
) -> None:
    with client.stream("GET", "/v1/events", headers={"Origin": ALLOWED}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["access-control-allow-origin"] == ALLOWED
        body = "".join(response.iter_text())
    assert body.count("event: text") == 3


def test_the_policy_passes_each_body_chunk_on_as_soon_as_it_is_sent() -> None:
    """Each chunk the app sends reaches the server before the app sends the next one."""
    received: list[Message] = []

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert len(received) == 1
        for n in range(3):
            await send({"type": "http.response.body", "body": b"x" * n, "more_body": True})
            assert len(received) == 2 + n
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def server_send(message: Message) -> None:
        received.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "headers": [(b"host", b"kpool.test"), (b"origin", ALLOWED.encode())],
    }
    policy = cors.OriginPolicy(streaming_app, allowed=[ALLOWED])
    # A portal's own event loop: asyncio.run would clash with a loop already running in this
    # thread (Playwright's, when the browser tests share the session).
    with start_blocking_portal() as portal:
        portal.call(policy, scope, receive, server_send)

    assert [m["type"] for m in received] == ["http.response.start"] + ["http.response.body"] * 4
    assert (b"access-control-allow-origin", ALLOWED.encode()) in received[0]["headers"]
    assert [m["body"] for m in received[1:]] == [b"", b"x", b"xx", b""]


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("https://intranet.example.com", ("https://intranet.example.com",)),
        (
            " https://Intranet.Example.com/ , http://127.0.0.1:8081,",
            ("https://intranet.example.com", "http://127.0.0.1:8081"),
        ),
        (
            "https://intranet.example.com:443,http://wiki:80",
            ("https://intranet.example.com", "http://wiki"),
        ),
    ],
)
def test_cors_origins_are_read_comma_separated_and_normalised(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("KPOOL_CORS_ORIGINS", value)
    assert load_settings().cors_origins == expected


@pytest.mark.parametrize(
    "value",
    [
        "intranet.example.com",
        "https://intranet.example.com/widget",
        "ftp://intranet.example.com",
        "https://intranet.example.com,*",
        "null",
    ],
)
def test_a_bad_cors_origin_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KPOOL_CORS_ORIGINS", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "KPOOL_CORS_ORIGINS" in message
    assert "is not an origin" in message


def test_cors_origins_default_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPOOL_CORS_ORIGINS", raising=False)
    assert Settings().cors_origins == ()


def _items(header: str) -> set[str]:
    return {item.strip() for item in header.split(",") if item.strip()}
