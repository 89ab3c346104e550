"""The fake's Messages endpoints, driven by the real SDK: answers with citations, streaming,
the documented request traps, prompt caching, injected failures and token counting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import anthropic
import httpx
import pytest
from anthropic.types import Message, MessageParam

from tests.factories import make_pdf
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.messages import NOT_COVERED

MODEL = "claude-sonnet-5-5"
LEAVE = (
    "Leave Policy\n"
    "Employees accrue 25 days of annual leave per year. Unused annual leave expires 12 months "
    "after it is accrued. Carry-over of up to 5 days requires line-manager approval.\n"
    "Sick leave is recorded separately.\n"
)
TRAVEL_PAGES = [
    "Travel Policy. The per diem for domestic trips is 40 euros.",
    "Hotels must be booked through the travel portal. Economy class is the default for flights.",
]


def upload(client: anthropic.Anthropic, name: str, data: bytes, mime_type: str) -> str:
    return client.files.upload(file=(name, data, mime_type)).id


def document(file_id: str, title: str | None = None, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "file", "file_id": file_id},
        "citations": {"enabled": True},
        **extra,
    }
    if title is not None:
        block["title"] = title
    return block


def user(*blocks: dict[str, Any], question: str) -> MessageParam:
    content = [*blocks, {"type": "text", "text": question}]
    return cast(MessageParam, {"role": "user", "content": content})


def ask(client: anthropic.Anthropic, *messages: MessageParam, **kwargs: Any) -> Message:
    return client.messages.create(
        model=MODEL, max_tokens=kwargs.pop("max_tokens", 1024), messages=list(messages), **kwargs
    )


def citations_of(message: Message) -> list[Any]:
    return [c for block in message.content if block.type == "text" for c in block.citations or []]


@pytest.fixture
def leave_id(anthropic_client: anthropic.Anthropic) -> str:
    return upload(anthropic_client, "leave.txt", LEAVE.encode(), "text/plain")


# --------------------------------------------------------------------------------------------
# Answers and citations
# --------------------------------------------------------------------------------------------


def test_answer_cites_char_locations_that_slice_the_uploaded_text(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    message = ask(
        anthropic_client,
        user(document(leave_id, "Leave Policy"), question="When does unused annual leave expire?"),
    )

    assert message.id.startswith("msg_") and message.model == MODEL
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert len(message.content) > 1
    assert any(b.type == "text" and not b.citations for b in message.content)
    [citation] = citations_of(message)
    assert citation.type == "char_location"
    assert citation.cited_text == "Unused annual leave expires 12 months after it is accrued."
    assert citation.cited_text == LEAVE[citation.start_char_index : citation.end_char_index]
    assert (citation.document_index, citation.document_title, citation.file_id) == (
        0,
        "Leave Policy",
        leave_id,
    )
    assert message.usage.input_tokens >= len(LEAVE) // 4
    assert message.usage.output_tokens > 0


def test_pdf_documents_are_cited_by_page(anthropic_client: anthropic.Anthropic) -> None:
    pdf_id = upload(anthropic_client, "travel.pdf", make_pdf(TRAVEL_PAGES), "application/pdf")

    message = ask(anthropic_client, user(document(pdf_id), question="How are hotels booked?"))

    [citation] = citations_of(message)
    assert citation.type == "page_location"
    assert (citation.start_page_number, citation.end_page_number) == (2, 3)
    assert citation.cited_text == "Hotels must be booked through the travel portal."
    assert citation.document_title is None and citation.file_id == pdf_id


def test_document_index_counts_documents_across_all_messages(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    pdf_id = upload(anthropic_client, "travel.pdf", make_pdf(TRAVEL_PAGES), "application/pdf")

    message = ask(
        anthropic_client,
        user(document(leave_id, "Leave"), question="Summarise the leave policy."),
        {"role": "assistant", "content": "It covers annual and sick leave."},
        user(document(pdf_id, "Travel"), question="How are hotels booked?"),
    )

    cited = {(c.document_index, c.file_id, c.document_title) for c in citations_of(message)}
    assert cited == {(1, pdf_id, "Travel")}


def test_a_question_the_documents_do_not_cover_gets_a_plain_answer(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    message = ask(anthropic_client, user(document(leave_id), question="Who won the 1998 cup?"))

    assert [(b.type, b.text, b.citations) for b in message.content if b.type == "text"] == [
        ("text", NOT_COVERED, None)
    ]


def test_without_citations_the_answer_is_one_uncited_block(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    block = document(leave_id)
    del block["citations"]
    message = ask(anthropic_client, user(block, question="When does annual leave expire?"))

    [text] = message.content
    assert text.type == "text" and text.citations is None and "12 months" in text.text


def test_max_tokens_cuts_the_answer(anthropic_client: anthropic.Anthropic, leave_id: str) -> None:
    message = ask(
        anthropic_client, user(document(leave_id), question="When does leave expire?"), max_tokens=3
    )

    assert message.stop_reason == "max_tokens"
    assert sum(len(b.text) for b in message.content if b.type == "text") <= 12


def test_the_request_body_is_recorded_as_sent(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    ask(anthropic_client, user(document(leave_id, "Leave"), question="Carry-over?"))

    [body] = fake_anthropic.messages.bodies()
    assert body["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "file", "file_id": leave_id},
        "citations": {"enabled": True},
        "title": "Leave",
    }


def test_a_scripted_reply_is_returned_verbatim_once(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    citation = {
        "type": "char_location",
        "cited_text": "Sick leave is recorded separately.",
        "document_index": 0,
        "document_title": "Leave",
        "start_char_index": 7,
        "end_char_index": 9,
        "file_id": leave_id,
    }
    scripted: list[dict[str, Any]] = [
        {"type": "text", "text": "Yes: "},
        {"type": "text", "text": "it is separate", "citations": [citation]},
    ]
    fake_anthropic.messages.script_reply(scripted)
    question = user(document(leave_id), question="Is sick leave separate?")

    first, second = ask(anthropic_client, question), ask(anthropic_client, question)

    assert [b.model_dump(exclude_none=True) for b in first.content] == scripted
    assert first.content != second.content


def test_a_malformed_script_fails_in_the_test(fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(ValueError):
        fake_anthropic.messages.script_reply([{"type": "text"}])


PICK = {
    "name": "pick",
    "description": "Pick documents.",
    "input_schema": {
        "type": "object",
        "properties": {
            "numbers": {"type": "array", "items": {"type": "integer"}},
            "sure": {"type": "boolean"},
            "note": {"type": "string"},
        },
        "required": ["numbers", "sure"],
    },
}


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_gets_a_tool_use_reply_its_schema_accepts(
    anthropic_client: anthropic.Anthropic, stream: bool
) -> None:
    kwargs: dict[str, Any] = {
        "tools": [PICK],
        "tool_choice": {"type": "tool", "name": "pick"},
        "max_tokens": 100,
    }
    question = user(question="Which one?")
    message: Message
    if stream:
        with anthropic_client.messages.stream(model=MODEL, messages=[question], **kwargs) as events:
            message = events.get_final_message()
    else:
        message = ask(anthropic_client, question, **kwargs)
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "pick" and block.id.startswith("toolu_")
    assert block.input == {"numbers": [], "sure": True}
    assert message.stop_reason == "tool_use" and message.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("schema", "plainest"),
    [
        ({"type": "string", "enum": ["b", "a"]}, "b"),
        ({"const": 3}, 3),
        ({"anyOf": [{"type": "integer", "minimum": 2}, {"type": "string"}]}, 2),
        ({"type": "array", "items": {"type": "boolean"}, "minItems": 2}, [True, True]),
        ({"type": ["null", "integer"], "exclusiveMinimum": 4}, 5),
        ({"type": "number", "maximum": -1}, -1),
        ({"type": "string", "minLength": 3}, "xxx"),
    ],
)
def test_the_forced_reply_satisfies_the_schemas_constraints(
    anthropic_client: anthropic.Anthropic, schema: dict[str, Any], plainest: Any
) -> None:
    tool = {
        "name": "pick",
        "input_schema": {"type": "object", "properties": {"v": schema}, "required": ["v"]},
    }
    message = ask(
        anthropic_client,
        user(question="Which one?"),
        tools=[tool],
        tool_choice={"type": "tool", "name": "pick"},
    )
    (block,) = message.content
    assert block.type == "tool_use" and block.input == {"v": plainest}


def test_a_tool_schema_that_is_not_an_object_is_refused(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=r"input_schema\.type"):
        ask(
            anthropic_client,
            user(question="Which one?"),
            tools=[{"name": "pick", "input_schema": {"type": "array"}}],
        )


def test_forcing_a_tool_the_request_lacks_is_refused(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="Tool 'other' not found"):
        ask(
            anthropic_client,
            user(question="Which one?"),
            tools=[PICK],
            tool_choice={"type": "tool", "name": "other"},
        )


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


def test_stream_yields_text_and_citation_events_and_the_final_message(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    messages = [user(document(leave_id, "Leave"), question="When does annual leave expire?")]
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=1024, messages=messages
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    created = ask(anthropic_client, *messages)

    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "text" in kinds and "citation" in kinds and "message_delta" in kinds
    streamed = "".join(e.text for e in events if e.type == "text")
    assert streamed == "".join(b.text for b in final.content if b.type == "text")
    assert [e.citation for e in events if e.type == "citation"] == citations_of(final)
    assert [(b.type, b.text, b.citations) for b in final.content if b.type == "text"] == [
        (b.type, b.text, b.citations) for b in created.content if b.type == "text"
    ]
    assert final.usage.input_tokens == created.usage.input_tokens
    assert final.usage.output_tokens == created.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_the_raw_stream_is_server_sent_events_with_ping_and_cumulative_usage(
    fake_anthropic: FakeAnthropic, anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [user(document(leave_id), question="When does annual leave expire?")],
    }
    headers = {"x-api-key": fake_anthropic.api_key, "anthropic-version": "2026-10-21"}
    response = httpx.post(f"{fake_anthropic.base_url}/v1/messages", json=body, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    assert "data: " + '{"type": "message_stop"}' in response.text
    delta = next(line for line in response.text.splitlines() if '"message_delta"' in line)
    assert '"input_tokens"' in delta and '"output_tokens"' in delta


def test_an_error_event_mid_stream_raises_status_200_and_is_not_retried(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    fake_anthropic.messages.stream_error_after(4)
    messages = [user(document(leave_id), question="When does annual leave expire?")]

    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        anthropic_client.messages.stream(model=MODEL, max_tokens=1024, messages=messages) as s,
    ):
        s.until_done()

    assert raised.value.status_code == 200
    assert raised.value.type == "overloaded_error"
    assert len(fake_anthropic.requests_to("POST", "/v1/messages")) == 1


# --------------------------------------------------------------------------------------------
# Request traps
# --------------------------------------------------------------------------------------------

Request = Callable[[anthropic.Anthropic, str], Any]


def _create(**body: Any) -> Request:
    """A call that sends ``body`` as is (the SDK's own keyword checks are bypassed)."""

    def call(client: anthropic.Anthropic, file_id: str) -> Any:
        filled = _fill(body, file_id)
        headers = filled.pop("headers", None)
        return client.post(
            "/v1/messages",
            body={"model": MODEL, **filled},
            cast_to=Message,
            options={"headers": headers} if headers else {},
        )

    return call


def _fill(value: Any, file_id: str) -> Any:
    if value == "FILE":
        return file_id
    if isinstance(value, dict):
        return {k: _fill(v, file_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, file_id) for v in value]
    return value


def _doc(**extra: Any) -> dict[str, Any]:
    return document("FILE", **extra)


QUESTION = {"type": "text", "text": "When does leave expire?"}
OK = {"max_tokens": 50, "messages": [{"role": "user", "content": [_doc(), QUESTION]}]}
OLD_VERSION = {"anthropic-version": "2023-06-01"}

TRAPS = [
    pytest.param(
        _create(messages=OK["messages"]),
        anthropic.BadRequestError,
        "max_tokens: Field required",
        id="max_tokens-missing",
    ),
    pytest.param(
        _create(**OK, temperature=0.2),
        anthropic.BadRequestError,
        "temperature: Extra inputs are not permitted",
        id="temperature-on-2026-10-21",
    ),
    pytest.param(
        _create(**OK, top_k=5),
        anthropic.BadRequestError,
        "top_k: Extra inputs are not permitted",
        id="top_k-on-2026-10-21",
    ),
    pytest.param(
        _create(**OK, temperature=1.5, headers=OLD_VERSION),
        anthropic.BadRequestError,
        "temperature: Input should be a number between 0 and 1",
        id="temperature-out-of-range-on-2023-06-01",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [_doc()]},
                {"role": "user", "content": [QUESTION]},
            ],
        ),
        anthropic.BadRequestError,
        "messages.1.content.0: document blocks are not allowed in assistant turns",
        id="document-in-assistant-turn",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "Earlier answer",
                            "citations": [
                                {
                                    "type": "char_location",
                                    "cited_text": "x",
                                    "document_index": 0,
                                    "document_title": None,
                                    "start_char_index": 0,
                                    "end_char_index": 1,
                                }
                            ],
                        },
                        QUESTION,
                    ],
                }
            ],
        ),
        anthropic.BadRequestError,
        "messages.0.content.0.text.citations: text blocks in user turns cannot carry citations",
        id="citations-in-user-turn",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {"role": "user", "content": [_doc(), _doc(citations={"enabled": False}), QUESTION]}
            ],
        ),
        anthropic.BadRequestError,
        "citations: must be enabled on all or none of the documents",
        id="citations-not-all-or-none",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            cache_control={"type": "ephemeral"},
            messages=[
                {
                    "role": "user",
                    "content": [*[_doc(cache_control={"type": "ephemeral"})] * 3, QUESTION],
                }
            ],
        ),
        anthropic.BadRequestError,
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        id="five-cache-breakpoints",
    ),
    pytest.param(
        _create(max_tokens=50, messages=[]),
        anthropic.BadRequestError,
        "messages: at least one message is required",
        id="no-messages",
    ),
    pytest.param(
        _create(max_tokens=50, messages=[{"role": "assistant", "content": "Hello"}]),
        anthropic.BadRequestError,
        'messages: first message must use the "user" role',
        id="starts-with-assistant",
    ),
    pytest.param(
        _create(max_tokens=50, messages=[{"content": "Hi"}]),
        anthropic.BadRequestError,
        "messages.0.role: Field required",
        id="message-without-role",
    ),
    pytest.param(
        _create(**OK, colour="blue"),
        anthropic.BadRequestError,
        "colour: Extra inputs are not permitted",
        id="unknown-top-level-key",
    ),
    pytest.param(
        _create(**OK, workspace_id="wrkspc_1"),
        anthropic.BadRequestError,
        "workspace_id: Extra inputs are not permitted",
        id="header-only-param-in-body",
    ),
    pytest.param(
        _create(max_tokens=50, messages=[{"role": "user", "content": [_doc(page=3), QUESTION]}]),
        anthropic.BadRequestError,
        "messages.0.content.0.document.page: Extra inputs are not permitted",
        id="unknown-key-in-a-document",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [_doc(source={"type": "files", "file_id": "FILE"}), QUESTION],
                }
            ],
        ),
        anthropic.BadRequestError,
        "messages.0.content.0.document.source: Input tag 'files' found using 'type' does not "
        "match any of the expected tags",
        id="unknown-source-type",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        _doc(source={"type": "file", "file_id": "file_011Cnope"}),
                        QUESTION,
                    ],
                }
            ],
        ),
        anthropic.NotFoundError,
        "messages.0.content.0.document.source.file_id: File not found: file_011Cnope",
        id="unknown-file-id",
    ),
    pytest.param(
        _create(
            max_tokens=50,
            messages=[
                {"role": "user", "content": [_doc(), QUESTION]},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
                {"role": "user", "content": "And then?"},
            ],
        ),
        anthropic.BadRequestError,
        "messages.1.content.0: text content blocks must be non-empty",
        id="empty-text-block",
    ),
    pytest.param(
        _create(max_tokens=50, messages=[{"role": "user", "content": " \n "}]),
        anthropic.BadRequestError,
        "messages.0.content.0: text content blocks must contain non-whitespace text",
        id="whitespace-question",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), TRAPS)
def test_requests_the_real_api_refuses_are_refused(
    anthropic_client: anthropic.Anthropic,
    fake_anthropic: FakeAnthropic,
    leave_id: str,
    call: Request,
    error: type[anthropic.APIStatusError],
    message: str,
) -> None:
    with pytest.raises(error) as raised:
        call(anthropic_client, leave_id)

    assert message in (raised.value.api_message or "")
    assert len(fake_anthropic.requests_to("POST", "/v1/messages")) == 1  # 4xx: no SDK retry


def test_sampling_parameters_are_accepted_on_the_old_api_version(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    message = _create(**OK, temperature=0.2, top_p=0.9, top_k=5, headers=OLD_VERSION)(
        anthropic_client, leave_id
    )
    assert message.stop_reason == "end_turn"


def test_an_assistant_turn_replayed_with_to_param_is_accepted(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    first = user(document(leave_id, "Leave"), question="When does annual leave expire?")
    answer = ask(anthropic_client, first)
    assert citations_of(answer)  # replayed below with file_id in each citation, as the SDK does

    follow_up = ask(
        anthropic_client, first, answer.to_param(), user(question="Who approves carry-over?")
    )

    assert [c.cited_text for c in citations_of(follow_up)] == [
        "Carry-over of up to 5 days requires line-manager approval."
    ]


def test_a_deleted_file_is_not_found_and_named(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    fake_anthropic.delete_out_of_band(leave_id)

    with pytest.raises(anthropic.NotFoundError) as raised:
        ask(anthropic_client, user(document(leave_id), question="Leave?"))

    assert raised.value.type == "not_found_error"
    assert f"File not found: {leave_id}" in (raised.value.api_message or "")


def test_a_file_that_is_neither_pdf_nor_text_is_an_unsupported_document(
    anthropic_client: anthropic.Anthropic,
) -> None:
    csv_id = upload(anthropic_client, "rates.csv", b"city,rate\nParis,40\n", "text/csv")

    with pytest.raises(anthropic.BadRequestError) as raised:
        ask(anthropic_client, user(document(csv_id), question="Rates?"))

    assert "Unsupported document file format: text/csv" in (raised.value.api_message or "")


def test_a_body_over_32_mb_is_refused_with_413(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic
) -> None:
    huge = "x" * (32 * 1024 * 1024)

    with pytest.raises(anthropic.ContentTooLargeError) as raised:
        ask(anthropic_client, {"role": "user", "content": huge})

    assert raised.value.status_code == 413
    [request] = fake_anthropic.requests_to("POST", "/v1/messages")
    assert request.json is None  # refused before the body was parsed


# --------------------------------------------------------------------------------------------
# Prompt caching, failures, token counting
# --------------------------------------------------------------------------------------------


def test_the_same_prefix_is_cached_then_read_until_it_expires(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    cached = document(leave_id, "Leave", cache_control={"type": "ephemeral"})

    first = ask(anthropic_client, user(cached, question="When does leave expire?"))
    second = ask(anthropic_client, user(cached, question="Who approves carry-over?"))
    fake_anthropic.messages.advance_clock(301)
    third = ask(anthropic_client, user(cached, question="Who approves carry-over?"))

    created = first.usage.cache_creation_input_tokens or 0
    assert created >= len(LEAVE) // 4 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == created
    assert second.usage.cache_creation_input_tokens == 0
    assert third.usage.cache_creation_input_tokens == created
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == created


def test_a_529_on_messages_is_retried_by_the_sdk(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    fake_anthropic.fail_next(2, 529, path_prefix="/v1/messages")

    message = ask(anthropic_client, user(document(leave_id), question="Leave expiry?"))

    assert message.stop_reason == "end_turn"
    attempts = fake_anthropic.requests_to("POST", "/v1/messages")
    assert [r.retry_count for r in attempts] == [0, 1, 2]


def test_latency_makes_the_sdk_time_out(
    anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic, leave_id: str
) -> None:
    fake_anthropic.messages.set_latency(0.5)
    impatient = anthropic_client.with_options(timeout=0.1, max_retries=0)

    with pytest.raises(anthropic.APITimeoutError):
        ask(impatient, user(document(leave_id), question="Leave?"))


def test_count_tokens_agrees_with_the_messages_usage(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    messages = [user(document(leave_id, "Leave"), question="When does leave expire?")]

    counted = anthropic_client.messages.count_tokens(model=MODEL, messages=messages)
    used = ask(anthropic_client, *messages).usage

    assert counted.input_tokens == used.input_tokens >= len(LEAVE) // 4


def test_count_tokens_validates_like_messages(
    anthropic_client: anthropic.Anthropic, leave_id: str
) -> None:
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.count_tokens(
            model=MODEL, messages=[user(document("file_011Cgone"), question="?")]
        )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs"):
        anthropic_client.messages.count_tokens(
            model=MODEL,
            messages=[user(document(leave_id), question="?")],
            extra_body={"max_tokens": 10},
        )
