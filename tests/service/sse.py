"""Reading a server-sent event stream in tests, as a browser's parser would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str
    data: Any


def parse_events(body: str) -> list[Event]:
    """The events of an SSE body: ``event:`` names, ``data:`` lines joined, comments skipped."""
    events = []
    for frame in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in frame.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append(Event(name, json.loads("\n".join(data))))
    return events


def streamed_text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.name == "text")
