"""What each question asked over HTTP costs, and how it ended.

``Accounting`` (one per app) opens a ``Tally`` per question: the caller's hourly token budget is
checked before each request the question makes upstream (none for extractive answers or a
question nothing matches), and when the question ends, however it ends, its usage is charged
to the budget and one audit entry is written, exactly once.

The tally sees the question twice: through the answerer it hands to ``start_answer`` (so it
knows the files a Messages request carries, even when Anthropic refuses that request) and
through the answer's events (so it knows whether the answer finished, failed or was left by
its client). An answer that fails or is cancelled midway is charged and audited for what routing
spent upstream before it (a reranking request, ``service.rerank``, counted as it is made) and
what the answer's stream had reported by then (its input from the start, its output so far);
one that finished but could not be recorded in its conversation, for all it spent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ParamSpec

from indexing.errors import PoolError
from indexing.models import utcnow
from indexing.pool import Pool
from service.answer import NOT_COVERED, TOO_LONG, Answer, AnswerEvent, Finished, Reply, Spent, Usage
from service.ask import Answerer, Answering
from service.audit import AuditEntry, AuditLog, Outcome
from service.auth import Caller
from service.limits import Limiter, budgeted, identity
from service.prompt import Question, RequestDocument, indexed_documents
from service.rerank import Candidate, Judge, Judgement, RerankFailed

P = ParamSpec("P")


@dataclass(frozen=True)
class Accounting:
    limiter: Limiter
    audit: AuditLog
    #: Keep the question's text in the audit entry (``KPOOL_AUDIT_QUESTIONS``).
    keep_questions: bool = False

    def tally(
        self,
        caller: Caller,
        *,
        address: str | None,
        answerer: Answerer,
        text: str,
        conversation_id: str | None,
        streamed: bool,
    ) -> Tally:
        """A tally for one question. Its caller's token budget is checked before each request
        the question makes upstream (``RateLimited`` when spent), so a question that needs
        none (nothing matches) is answered even then."""
        who = identity(caller, address)
        return Tally(
            self,
            caller=caller,
            who=who,
            address=address,
            answerer=answerer,
            text=text,
            conversation_id=conversation_id,
            streamed=streamed,
        )


class Tally:
    """One question on its way: ``run`` starts the answer with ``tally.answerer`` as the
    answerer, ``follow`` watches the answering it returned to its end."""

    def __init__(
        self,
        accounting: Accounting,
        *,
        caller: Caller,
        who: str,
        address: str | None,
        answerer: Answerer,
        text: str,
        conversation_id: str | None,
        streamed: bool,
    ) -> None:
        self.accounting = accounting
        self.caller = caller
        self.who = who
        self.address = address
        self.text = text
        self.conversation_id = conversation_id
        self.streamed = streamed
        self._answerer = answerer
        self.question: Question | None = None
        self.sent: list[str] = []
        self._asked_at = utcnow()
        self._started = time.monotonic()
        self._ended = False
        self._lock = threading.Lock()
        self._judged = Usage()
        self._judge_model: str | None = None
        self._reported = Usage()  # what the answer's stream said it had cost so far
        self._answering: Answering | None = None

    @property
    def answerer(self) -> Answerer:
        """The answerer to start the answer with: the app's, telling this tally what it sends."""
        return _Witness(self._answerer, self)

    def run(self, start: Callable[P, Answering], *args: P.args, **kwargs: P.kwargs) -> Answering:
        """``start(*args, **kwargs)`` (``start_answer``, given ``tally.answerer``); if it
        fails, the question ends here as ``failed``."""
        try:
            return start(*args, **kwargs)
        except Exception as exc:
            self.end("failed", error=exc)
            raise

    def check_budget(self) -> None:
        """Before a request upstream: ``RateLimited`` if the caller's budget is spent."""
        self.accounting.limiter.check_budget(self.who)

    def saw(self, question: Question) -> None:
        """The question as the answerer is about to send it."""
        self.question = question
        if self._answerer.mode == "claude":
            sent = indexed_documents(question.history, question.documents)
            self.sent = [d.file_id for d in sent]

    def follow(self, answering: Answering) -> Answering:
        """``answering``, reporting its end to this tally."""
        self.question = self.question or answering.question
        self._answering = answering
        return Answering(answering.question, _Followed(answering, self), record=_as_it_is)

    def judged(self, model: str, usage: Usage) -> None:
        """A reranking request to ``model`` spent ``usage`` (``service.rerank``), whatever
        comes of it."""
        with self._lock:
            self._judged = self._judged + usage
            self._judge_model = model

    def reported(self, usage: Usage) -> None:
        """The answer's stream reported these totals so far."""
        with self._lock:
            self._reported = usage

    def end(
        self, outcome: Outcome, *, answer: Answer | None = None, error: Exception | None = None
    ) -> None:
        """Charge the budget and write the audit entry; only the first call counts."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        usage = answer.usage if answer is not None else self._spent_without_answer()
        self.accounting.limiter.charge(self.who, budgeted(usage))
        self.accounting.audit.write(self.entry(outcome, answer, usage, error))

    def entry(
        self, outcome: Outcome, answer: Answer | None, usage: Usage, error: Exception | None
    ) -> AuditEntry:
        routed = answer.documents if answer is not None else self._routed()
        return AuditEntry(
            at=self._asked_at,
            key_id=self.caller.key_id,
            owner=self.caller.owner,
            role=self.caller.role,
            address=self.address,
            conversation_id=(answer.conversation_id if answer else None) or self.conversation_id,
            mode=answer.mode if answer else self._answerer.mode,
            model=answer.model if answer else self._answerer.model,
            streamed=self.streamed,
            file_ids=self.sent,
            document_ids=[d.document_id for d in routed],
            outcome=outcome,
            error=error_type(error) if error is not None else None,
            request_id=answer.request_id if answer else None,
            duration_ms=round((time.monotonic() - self._started) * 1000),
            question=self.text if self.accounting.keep_questions else None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            rerank_model=self._judge_model,
            rerank_input_tokens=self._judged.input_tokens,
            rerank_output_tokens=self._judged.output_tokens,
        )

    def _spent_without_answer(self) -> Usage:
        """What a question that ended without an answer handed on spent: its reranking, if
        any, and the answer: all of it if the answerer finished it (recording it failed), else
        what its stream had reported when it failed or its client left."""
        answering = self._answering
        finished = answering.finished if answering is not None else None
        return self._judged + (finished.usage if finished is not None else self._reported)

    def _routed(self) -> list[RequestDocument]:
        return list(self.question.routed) if self.question is not None else []


def error_type(error: Exception) -> str:
    """The ``error.type`` the caller was shown for ``error``."""
    return error.kind if isinstance(error, PoolError) else "internal_error"


def outcome_of(answer: Answer) -> Outcome:
    """``abstained`` when no answer was asked for: nothing matched, or nothing could be sent."""
    unasked = answer.answer == NOT_COVERED or answer.answer.startswith(TOO_LONG)
    return "abstained" if unasked else "answered"


class _Witness:
    """The app's answerer, telling the tally what it is about to send."""

    def __init__(self, answerer: Answerer, tally: Tally) -> None:
        self.mode = answerer.mode
        self.model = answerer.model
        self.judge: Judge | None = (
            None if answerer.judge is None else _Counted(answerer.judge, tally)
        )
        self._answerer = answerer
        self._tally = tally

    def open(self, pool: Pool, question: Question) -> Reply:
        if self.mode == "claude":
            self._tally.check_budget()  # first: a refused question sent nothing
        self._tally.saw(question)
        return self._answerer.open(pool, question)


class _Counted:
    """The answerer's reranking judge, telling the tally what each judgement spent."""

    def __init__(self, judge: Judge, tally: Tally) -> None:
        self.model = judge.model
        self._judge = judge
        self._tally = tally

    def judge(
        self, question: str, candidates: Sequence[Candidate], earlier: Sequence[str] = ()
    ) -> Judgement:
        self._tally.check_budget()
        try:
            judgement = self._judge.judge(question, candidates, earlier)
        except RerankFailed as exc:
            self._tally.judged(self.model, exc.usage)
            raise
        self._tally.judged(self.model, judgement.usage)
        return judgement


class _Followed:
    """An answering's events, passed on unchanged; how they end is reported to the tally."""

    def __init__(self, reply: Reply, tally: Tally) -> None:
        self._reply = reply
        self._tally = tally

    def __iter__(self) -> Iterator[AnswerEvent]:
        try:
            for event in self._reply:
                if isinstance(event, Spent):
                    self._tally.reported(event.usage)
                elif isinstance(event, Finished):
                    # Before passing it on: whoever collects the answer stops reading here.
                    self._tally.end(outcome_of(event.answer), answer=event.answer)
                yield event
        except Exception as exc:
            self._tally.end("failed", error=exc)
            raise

    def close(self) -> None:
        try:
            self._reply.close()
        finally:
            self._tally.end("cancelled")  # nothing, when it has already ended


def _as_it_is(answer: Answer) -> Answer:
    return answer
