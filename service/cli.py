"""The ``kpool`` command line. Each command is a thin layer over the same functions the HTTP
API uses; every command takes ``--json`` for machine-readable output."""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from indexing.bulk import BulkReport, bulk_ingest
from indexing.errors import ConfigurationError, DocumentNotFound, PoolError
from indexing.expansion import ExpandReport, expand
from indexing.filters import Condition, Filters
from indexing.ingest import Outcome, delete_document, reindex, usable_cores, vectorise
from indexing.models import Document
from indexing.pool import Pool
from indexing.reconcile import reconcile as reconcile_pool
from service.expand import make_describer
from service.filters import parse_assignments, parse_expressions
from service.pool import make_backend, open_pool
from service.router import route as route_question
from service.settings import Settings, load_settings

_T = TypeVar("_T")

#: Describing requests in flight during ``kpool ingest`` (``KPOOL_EXPAND``).
DESCRIBE_WORKERS = 4


def _clearly(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """``invoke(ctx)``, showing pool errors as one clear line (exit 1), not a traceback."""
    try:
        return invoke(ctx)
    except PoolError as exc:
        raise click.ClickException(str(exc)) from exc


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        return _clearly(super().invoke, ctx)


class _Command(click.Command):
    """A command as clear on its own as in the group (the cron script runs ``ingest``)."""

    def invoke(self, ctx: click.Context) -> Any:
        return _clearly(super().invoke, ctx)


@click.group(cls=_Group)
@click.version_option("0.1.0", prog_name="kpool")
def main() -> None:
    """Knowledge Pool: answer questions from your company's documents.

    The pool lives in KPOOL_HOME (default ./.kpool); see the README for every setting.
    """


def _settings() -> Settings:
    return load_settings()


@contextmanager
def _pool(*, load_index: bool = False, check_params: bool = True) -> Iterator[Pool]:
    settings = _settings()
    if check_params:
        pool = open_pool(settings, load_index=load_index)
    else:
        pool = Pool.open(
            settings.pool_config(), make_backend(settings), load_index=False, check_params=False
        )
    try:
        yield pool
    finally:
        pool.close()


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _parsed(parse: Callable[[Sequence[str]], _T], given: Sequence[str]) -> _T:
    """A repeatable option's values through ``parse``; a bad one is a usage error."""
    try:
        return parse(given)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: ``--attribute`` where documents are routed or listed: conditions they must meet.
_attribute_filter = click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="CONDITION",
    callback=lambda _ctx, _param, given: _parsed(parse_expressions, given),
    help="Only documents whose attribute matches: NAME=VALUE (repeat NAME for any of several "
    "values), or NAME>=VALUE, NAME>VALUE, NAME<=VALUE, NAME<VALUE over numbers and ISO dates "
    "(repeatable).",
)


# ------------------------------------------------------------------------------------- serve


@main.command()
@click.option("--host", default=None, help="Interface to bind (default KPOOL_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default KPOOL_PORT, 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service.

    Example: kpool serve --port 8000
    """
    import uvicorn

    from service.app import create_app
    from service.keys import Keys

    settings = _settings()
    pool = open_pool(settings)
    try:
        check_exposure(host or settings.host, Keys(pool.store).any_live(), settings)
        app = create_app(settings, pool=pool)
        click.echo(
            f"kpool: {len(pool.index)} documents, {settings.backend_name} files backend, "
            f"listening on http://{host or settings.host}:{port or settings.port}",
            err=True,
        )
        uvicorn.run(app, host=host or settings.host, port=port or settings.port)
    finally:
        pool.close()


def check_exposure(host: str, has_keys: bool, settings: Settings) -> None:
    """Refuse to serve an open API (no keys) beyond this machine unless told to."""
    if has_keys or settings.allow_no_auth or is_loopback(host):
        return
    raise ConfigurationError(
        f"refusing to listen on {host} with no API keys: anyone who can reach it could read and "
        "change the pool. Create one with `kpool keys create --role admin`, listen on "
        "127.0.0.1, or set KPOOL_ALLOW_NO_AUTH=true to serve without keys anyway"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------ ingest


@main.command(cls=_Command)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    help="CSV or JSONL: path, title, tags, groups, attributes.",
)
@click.option("--tag", "tags", multiple=True, help="Tag every document (repeatable).")
@click.option(
    "--group", "groups", multiple=True, help="Restrict every document to a group (repeatable)."
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    callback=lambda _ctx, _param, given: _parsed(parse_assignments, given),
    help="Set an attribute on every document (repeatable; a name given twice gets a list). "
    'VALUE is JSON when it parses (2024, true, "2024"), text otherwise; a manifest row\'s '
    "own value for NAME wins.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=None, help="Parallel uploads.")
@click.option("--prune", is_flag=True, help="Delete documents under PATHS that are gone from disk.")
@click.option("--dry-run", is_flag=True, help="Report what would change; upload nothing.")
@click.option(
    "--no-vectors",
    is_flag=True,
    help="Leave the sentence vectors to a running server instead of computing them here.",
)
@click.option(
    "--no-descriptions",
    is_flag=True,
    help="With KPOOL_EXPAND: leave describing the documents to a running server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest(
    paths: tuple[Path, ...],
    manifest: Path | None,
    tags: tuple[str, ...],
    groups: tuple[str, ...],
    attributes: dict[str, Any],
    concurrency: int | None,
    prune: bool,
    dry_run: bool,
    no_vectors: bool,
    no_descriptions: bool,
    as_json: bool,
) -> None:
    """Add or update documents from files and folders; exits 1 if any file failed.

    Example: kpool ingest ./policies --manifest policies.csv --concurrency 8 --prune
    """
    settings = _settings()
    progress = _Progress(sys.stderr) if not as_json else None
    with _pool() as pool:
        report = bulk_ingest(
            pool,
            list(paths),
            manifest=manifest,
            tags=tags,
            groups=groups,
            attributes=attributes,
            concurrency=concurrency or settings.ingest_concurrency,
            prune=prune,
            dry_run=dry_run,
            on_outcome=progress.update if progress else None,
        )
        if progress:
            progress.close()
        if as_json:
            _print_json(report.as_dict())
        else:
            _print_report(report)
        if not dry_run and settings.expand and not no_descriptions:
            _describe(pool, settings, quiet=as_json)
        if not dry_run and not no_vectors:
            _vectorise(pool, quiet=as_json)
    if not report.ok:
        sys.exit(1)


def _describe(pool: Pool, settings: Settings, *, quiet: bool) -> None:
    """With KPOOL_EXPAND on, have the documents that lack a description described before
    exiting (these, and any a server has not got to yet). They already route by their own
    words meanwhile, and a failure leaves them to a server or the next run."""
    waiting = pool.store.count_awaiting_expansion()
    if not waiting:
        return
    describer = make_describer(settings)
    assert describer is not None
    if not quiet:
        click.echo(f"describing {waiting} documents with {describer.model} ...", err=True)

    def show(report: ExpandReport) -> None:
        click.echo(
            f"described {report.described} documents "
            f"({report.input_tokens} input, {report.output_tokens} output tokens)",
            err=True,
        )

    try:
        report = expand(pool, describer, workers=DESCRIBE_WORKERS, progress=None if quiet else show)
    except Exception as exc:  # the ingest itself is committed; the descriptions can wait
        report = ExpandReport(interrupted=str(exc))
    finally:
        describer.client.close()
    if report.interrupted:
        click.echo(
            f"warning: stopped describing documents ({report.interrupted}); the rest route by "
            "their own words until a server or the next `kpool ingest` describes them",
            err=True,
        )
    if report.failed:
        click.echo(
            f"warning: {report.failed} documents could not be described (see the log); they "
            "route by their own words",
            err=True,
        )


def _vectorise(pool: Pool, *, quiet: bool) -> None:
    """With semantic routing on, compute the sentence vectors of the documents that lack them
    (these, and any a server has not got to yet) on every core before exiting. They already
    route by their words meanwhile."""
    if not pool.config.semantic:
        return
    waiting = pool.store.count_awaiting_vectors()
    if not waiting:
        return
    if not quiet:
        click.echo(f"computing sentence vectors for {waiting} documents ...", err=True)
    try:
        done = vectorise(pool, workers=usable_cores())
    except Exception as exc:  # the ingest itself is committed; the vectors can wait
        click.echo(
            f"warning: could not compute every sentence vector ({exc}); the documents route by "
            "their words until a server or the next `kpool ingest` computes them",
            err=True,
        )
        return
    if not quiet:
        click.echo(f"gave {done} documents their sentence vectors", err=True)


class _Progress:
    """A one-line bar on a terminal; one plain line per document otherwise (logs, cron mail)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def update(self, outcome: Outcome, done: int, total: int) -> None:
        if self.tty:
            width = 30
            filled = width * done // max(total, 1)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} {outcome.status:<9}")
        else:
            detail = f" ({outcome.reason})" if outcome.reason else ""
            self.stream.write(f"{outcome.status:<9} {outcome.source}{detail}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _print_report(report: BulkReport) -> None:
    for outcome in report.outcomes:
        if outcome.status == "failed":
            click.echo(f"failed: {outcome.source}: {outcome.reason}")
        for warning in outcome.warnings:
            click.echo(f"warning: {outcome.source}: {warning}")
    for path, reason in report.skipped:
        click.echo(f"skipped: {path}: {reason}")
    recovered = report.recovery.abandoned_uploads + report.recovery.deleted_retired
    if recovered:
        click.echo(f"recovered: deleted {len(recovered)} remote file(s) left by an earlier run")
    if report.recovery.deferred_intents:
        click.echo(
            f"recovery: {report.recovery.deferred_intents} upload(s) of an earlier run left for "
            "a later run: an upload of the same name is still in progress"
        )
    counts = report.counts
    click.echo(", ".join(f"{counts[s]} {s}" for s in counts))


# ------------------------------------------------------------------------------------- route


@main.command()
@click.argument("question")
@click.option("--top-k", type=click.IntRange(1, 100), default=None, help="How many documents.")
@click.option("--tag", "tags", multiple=True, help="Only documents with this tag (repeatable).")
@_attribute_filter
@click.option("--json", "as_json", is_flag=True, help="Print the route as JSON.")
def route(
    question: str,
    top_k: int | None,
    tags: tuple[str, ...],
    attributes: dict[str, Condition],
    as_json: bool,
) -> None:
    """Show which documents a question is routed to, with scores and matched terms.

    Example: kpool route "how many days of annual leave do I get?" --top-k 3
    """
    settings = _settings()
    with _pool(load_index=True) as pool:
        result = route_question(
            pool,
            question,
            top_k=top_k or settings.top_k,
            token_budget=settings.token_budget,
            tags=list(tags) or None,
            filters=Filters(attributes=attributes),
        )
    if as_json:
        _print_json(result.as_dict())
        return
    if not result.documents:
        click.echo("No document in the pool matches this question.")
        return
    for rank, doc in enumerate(result.documents, start=1):
        terms = ", ".join(f"{t} {c:.2f}" for t, c in doc.matched_terms.items())
        click.echo(f"{rank}. {doc.title}  [{doc.score:.3f}]  {doc.document_id} {doc.file_id}")
        click.echo(f"   matched: {terms}")


# --------------------------------------------------------------------------------------- ask


@main.command("ask")
@click.argument("question")
@click.option("--top-k", type=click.IntRange(1, 20), default=None, help="How many documents.")
@click.option("--tag", "tags", multiple=True, help="Only documents with this tag (repeatable).")
@_attribute_filter
@click.option(
    "--conversation",
    "conversation_id",
    default=None,
    help="Ask a follow-up in this conversation (its id is printed after each answer).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as /v1/ask returns it.")
def ask_command(
    question: str,
    top_k: int | None,
    tags: tuple[str, ...],
    attributes: dict[str, Condition],
    conversation_id: str | None,
    as_json: bool,
) -> None:
    """Answer a question from the pool, with numbered sources (no server needed).

    Example: kpool ask "how many days of annual leave can I carry over?"
    """
    from service.ask import ask, make_answerer
    from service.auth import Caller

    settings = _settings()
    with _pool(load_index=True) as pool:
        answer = ask(
            pool,
            settings,
            make_answerer(settings),
            question,
            caller=Caller(owner="cli"),  # an administrator: every document
            conversation_id=conversation_id,
            top_k=top_k,
            tags=list(tags) or None,
            filters=Filters(attributes=attributes),
        )
    if as_json:
        _print_json(answer.as_dict())
        return
    click.echo(answer.answer)
    if answer.citations:
        click.echo("\nSources:")
    for citation in answer.citations:
        where = (
            f"pages {citation.start_page_number}-{citation.end_page_number - 1}"
            if citation.start_page_number is not None and citation.end_page_number is not None
            else f"characters {citation.start_char_index}-{citation.end_char_index}"
        )
        click.echo(f"[{citation.number}] {citation.document_title} ({where})")
    if answer.mode == "extractive":
        click.echo(
            "\n(extractive mode: quoted passages, no model; set ANTHROPIC_API_KEY for answers)"
        )
    click.echo(f"\nFollow up with: --conversation {answer.conversation_id}")


# -------------------------------------------------------------------------------------- docs


@main.group()
def docs() -> None:
    """List, show and remove documents."""


def _doc_dict(doc: Document) -> dict[str, Any]:
    return doc.model_dump(mode="json")


@docs.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="Page size.")
@click.option("--cursor", default=None, help="Cursor from the previous page.")
@click.option("--tag", default=None, help="Only documents with this tag.")
@_attribute_filter
@click.option("--json", "as_json", is_flag=True, help="Print a JSON page {data, next_cursor}.")
def docs_list(
    limit: int,
    cursor: str | None,
    tag: str | None,
    attributes: dict[str, Condition],
    as_json: bool,
) -> None:
    """List documents, a page at a time.

    Example: kpool docs list --tag hr
    """
    with _pool() as pool:
        rows, next_cursor = pool.store.list_documents(
            limit=limit, cursor=cursor, tag=tag, attributes=attributes
        )
    if as_json:
        _print_json({"data": [_doc_dict(d) for d in rows], "next_cursor": next_cursor})
        return
    for doc in rows:
        tags = f"  tags={','.join(doc.tags)}" if doc.tags else ""
        groups = f"  groups={','.join(doc.groups)}" if doc.groups else ""
        click.echo(f"{doc.id}  v{doc.version}  {doc.format:<8} {doc.title}{tags}{groups}")
    if next_cursor:
        click.echo(f"more: kpool docs list --cursor {next_cursor}")


@docs.command("show")
@click.argument("document_id")
@click.option("--text", "with_text", is_flag=True, help="Also print the extracted text.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def docs_show(document_id: str, with_text: bool, as_json: bool) -> None:
    """Show one document's metadata, its generated description if it has one (KPOOL_EXPAND;
    empty when the model would not describe it) and, with --text, its extracted text.

    Example: kpool docs show doc_0123456789abcdef0123
    """
    with _pool() as pool:
        doc = pool.store.get_document(document_id)
        content = pool.store.get_content(document_id)
    data = _doc_dict(doc)
    if content.expansion is not None:  # KPOOL_EXPAND: what routing reads beside the text
        data["description"] = {
            "text": content.expansion,
            "model": content.expansion_model,
            "input_tokens": content.expansion_input_tokens,
            "output_tokens": content.expansion_output_tokens,
        }
    text = content.text if with_text else None
    if text is not None:
        data["text"] = text
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        if key != "text":
            click.echo(f"{key}: {value}")
    if text is not None:
        click.echo("\n" + text)


@docs.command("rm")
@click.argument("document_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the removed documents as JSON.")
def docs_rm(document_ids: tuple[str, ...], as_json: bool) -> None:
    """Remove documents: from routing first, then their remote files.

    Example: kpool docs rm doc_0123456789abcdef0123
    """
    removed: list[dict[str, str | None]] = []
    with _pool() as pool:
        unknown = [i for i in dict.fromkeys(document_ids) if not _exists(pool, i)]
        if unknown:  # all or nothing: a typo in the list must not leave half of it removed
            listed = ", ".join(map(repr, unknown))
            raise DocumentNotFound(f"no document with id {listed}; nothing was removed")
        for document_id in dict.fromkeys(document_ids):
            try:
                doc = delete_document(pool, document_id)
            except PoolError:
                for item in removed:  # say what was done before the failure is reported
                    click.echo(f"removed {item['id']} ({item['title']})", err=True)
                raise
            removed.append({"id": doc.id, "title": doc.title, "file_id": doc.file_id})
    if as_json:
        _print_json({"removed": removed})
        return
    for item in removed:
        click.echo(f"removed {item['id']} ({item['title']})")


def _exists(pool: Pool, document_id: str) -> bool:
    try:
        pool.store.get_document(document_id)
    except DocumentNotFound:
        return False
    return True


# --------------------------------------------------------------------------- reconcile, reindex


@main.command()
@click.option("--fix", is_flag=True, help="Re-upload missing files and delete orphans.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile(fix: bool, as_json: bool) -> None:
    """Compare the pool with the Files backend: missing remote files and orphans.

    Exits 1 when a difference remains. Example: kpool reconcile --fix
    """
    with _pool() as pool:
        report = reconcile_pool(pool, fix=fix)
    if as_json:
        _print_json(report.as_dict())
    else:
        click.echo(f"{report.documents} documents, {report.remote_files} remote files")
        for missing in report.missing:
            click.echo(f"missing: {missing.file_id} of {missing.source} ({missing.document_id})")
        for orphan in report.orphans:
            click.echo(f"orphan: {orphan.id} ({orphan.filename})")
        for recent in report.recent:
            click.echo(f"recent, not yet referenced (left alone): {recent.id} ({recent.filename})")
        for line in report.fixed:
            click.echo(f"fixed: {line}")
        for line in report.errors:
            click.echo(f"error: {line}")
        if report.clean:
            click.echo("in step")
    if not report.clean:
        sys.exit(1)


@main.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print the count as JSON.")
def reindex_command(as_json: bool) -> None:
    """Rebuild every summary with the configured analyzer and BM25 parameters.

    Needed after changing KPOOL_ANALYZER_* or KPOOL_BM25_*. Example: kpool reindex
    """
    with _pool(check_params=False) as pool:
        count = reindex(pool, vector_workers=usable_cores())
    if as_json:
        _print_json({"reindexed": count})
    else:
        click.echo(f"reindexed {count} documents")


# -------------------------------------------------------------------------------------- eval


@main.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to use.")
@click.option("--top-k", "cutoffs", default="1,3,10", show_default=True, help="Recall cutoffs.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def eval_command(dataset_dir: Path, split: str, cutoffs: str, as_json: bool) -> None:
    """Measure routing on a BEIR-layout dataset in a throwaway local pool (reranked by
    Claude too when KPOOL_RERANK is set, which costs one small request a question; its
    documents described by Claude first when KPOOL_EXPAND is set, one request a document).

    Example: kpool eval ../shared/data/scifact --json
    """
    from service.ask import make_judge
    from service.evaluation import evaluate, parse_cutoffs

    settings = _settings()
    describer = make_describer(settings)
    try:
        metrics = evaluate(
            dataset_dir,
            split=split,
            cutoffs=parse_cutoffs(cutoffs),
            settings=settings,
            judge=make_judge(settings),
            describer=describer,
        )
    finally:
        if describer is not None:
            describer.client.close()
    if as_json:
        click.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        click.echo(f"{key:<12} {value}")


# -------------------------------------------------------------------------------------- keys


@main.group()
def keys() -> None:
    """Create, list and revoke the service's API keys."""


@keys.command("create")
@click.option(
    "--role", type=click.Choice(["admin", "user", "widget"]), required=True, help="What it may do."
)
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--group", "groups", multiple=True, help="A document group it reads (repeatable).")
@click.option("--origin", "origins", multiple=True, help="A widget key's page origin (repeatable).")
@click.option(
    "--trusted-front-end",
    is_flag=True,
    help="Callers name the user and groups in X-Kpool-User / X-Kpool-Groups.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {key, id, role} as JSON.")
def keys_create(
    role: str,
    name: str,
    groups: tuple[str, ...],
    origins: tuple[str, ...],
    trusted_front_end: bool,
    as_json: bool,
) -> None:
    """Create an API key; its secret is shown this once.

    Example: kpool keys create --role widget --origin https://intranet.example.com
    """
    from service.keys import Keys

    with _pool() as pool:
        key, secret = Keys(pool.store).create(
            role=role,
            name=name,
            groups=_split(groups),
            origins=_split(origins),
            trusted_front_end=trusted_front_end,
        )
    if as_json:
        _print_json({"key": secret, **key.public()})
        return
    click.echo(secret)
    click.echo(f"({key.role} key {key.id}; the secret is not shown again)", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def keys_list(as_json: bool) -> None:
    """List the keys (never their secrets)."""
    from service.keys import Keys

    with _pool() as pool:
        found = Keys(pool.store).list()
    if as_json:
        _print_json([key.public() for key in found])
        return
    for key in found:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
        scope = ", ".join(key.origins or key.groups) or "-"
        click.echo(f"{key.id}  {key.prefix}…  {key.role:<6}  {state:<18}  {scope}  {key.name}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key as JSON.")
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke a key at once, for good.

    Example: kpool keys revoke key_0123456789abcdef
    """
    from service.keys import Keys

    with _pool() as pool:
        key = Keys(pool.store).revoke(key_id)
    if as_json:
        _print_json(key.public())
        return
    click.echo(f"revoked {key.id}")


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


# ------------------------------------------------------------------------------------- audit


@main.command("audit")
@click.option(
    "--since", default=None, metavar="ISO", help="Only entries from then on (UTC unless stated)."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, help="Most entries shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as a JSON list.")
def audit_command(since: str | None, limit: int, as_json: bool) -> None:
    """List the questions asked over HTTP, newest first: who, files sent, tokens, outcome.

    Example: kpool audit --since 2026-11-01 --limit 20
    """
    from service.audit import AuditLog, parse_since

    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    with _pool() as pool:
        entries = AuditLog(pool.store).entries(since=start, limit=limit)
    if as_json:
        _print_json([entry.public() for entry in entries])
        return
    for entry in entries:
        click.echo(entry.summary())


if __name__ == "__main__":  # last: every command is defined by then
    main()
