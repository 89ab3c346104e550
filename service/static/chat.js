// The chat page: questions go to POST /v1/ask as a stream of server-sent events, read with
// fetch and parsed here (EventSource cannot POST). Answers are rendered from text and DOM
// nodes only; the `[n]` markers become footnote links to the cited passages.

import { ApiError, describeError, el, errorFromResponse, formatInteger } from "./common.js";

const ASK_URL = "/v1/ask";
const INFO_URL = "/v1/info";
const KEY_STORAGE = "kpool.apiKey";

/** Where the key is kept when the browser refuses session storage: this page only. */
const memory = { key: "" };

/** The key given on this page; "" when none was, or the browser blocks storage. */
function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || memory.key;
  } catch {
    return memory.key;
  }
}

function keepKey(key) {
  memory.key = key;
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    // Storage blocked: the key lasts as long as the page.
  }
}

/** Headers of every request to the service: the key given on this page, if any. */
function requestHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

const form = document.getElementById("ask-form");
const box = document.getElementById("question");
const sendButton = document.getElementById("send");
const thread = document.getElementById("thread");
const intro = document.getElementById("intro");
const modeNote = document.getElementById("mode-note");
const modelLine = document.getElementById("model-line");
const newButton = document.getElementById("new-conversation");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");

const state = {
  conversationId: null,
  controller: null,
  turns: 0,
};

// ------------------------------------------------------------------------------- the composer

box.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.controller) return; // one answer at a time; the button is Stop meanwhile
  const question = box.value.trim();
  if (!question) {
    box.focus();
    return;
  }
  box.value = "";
  ask(question);
});

sendButton.addEventListener("click", (event) => {
  if (state.controller) {
    event.preventDefault();
    state.controller.abort();
  }
});

newButton.addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.conversationId = null;
  thread.replaceChildren();
  intro.hidden = false;
  box.value = "";
  box.focus();
});

function setStreaming(controller) {
  state.controller = controller;
  const streaming = controller !== null;
  thread.setAttribute("aria-busy", String(streaming));
  sendButton.textContent = streaming ? "Stop" : "Send";
  sendButton.classList.toggle("stop", streaming);
  sendButton.setAttribute("aria-label", streaming ? "Stop the answer" : "Send the question");
}

// ------------------------------------------------------------------------------------ asking

async function ask(question, replacing = null) {
  const position = replacing ? replacing.dataset.position : thread.children.length + 1;
  const view = new TurnView(++state.turns, position, question);
  if (replacing) replacing.replaceWith(view.root);
  else thread.append(view.root);
  intro.hidden = true;
  window.scrollTo({ top: document.documentElement.scrollHeight });

  const controller = new AbortController();
  setStreaming(controller);
  const body = { question, stream: true };
  const sentConversation = state.conversationId;
  if (sentConversation) body.conversation_id = sentConversation;
  try {
    const response = await fetch(ASK_URL, {
      method: "POST",
      headers: requestHeaders({
        "Content-Type": "application/json",
        Accept: "text/event-stream",
      }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (response.status === 404 && sentConversation) {
      // Forgotten (idle too long) or deleted: the next question starts a new conversation.
      if (state.conversationId === sentConversation) state.conversationId = null;
      throw new ApiError("That conversation has expired; ask again to start a new one.");
    }
    if (response.status === 401) {
      askForKey();
      throw new ApiError("This service needs a valid API key: enter it above, then try again.");
    }
    if (!response.ok) throw await errorFromResponse(response);
    const type = response.headers.get("Content-Type") || "";
    if (type.startsWith("text/event-stream")) {
      await readEvents(response.body, (name, data) => view.handle(name, data));
    } else {
      view.finish(await response.json());
    }
    if (!view.finished) {
      throw new ApiError("The answer was cut off before it finished. Try again.");
    }
    if (view.root.isConnected && view.conversationId) {
      state.conversationId = view.conversationId;
    }
  } catch (error) {
    const stopped = error && error.name === "AbortError";
    view.fail(describeError(error), stopped ? null : () => retry(view, question));
  } finally {
    if (state.controller === controller) setStreaming(null);
  }
}

function retry(view, question) {
  if (state.controller) return;
  ask(question, view.root);
  box.focus();
}

/**
 * Read a `text/event-stream` body, calling `onEvent(name, data)` per event with its JSON data.
 * Comment lines (keep-alives) are skipped. If `onEvent` throws, reading stops and it rethrows.
 */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  const dispatch = () => {
    if (data.length) onEvent(name, parseData(data.join("\n")));
    name = "message";
    data = [];
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") dispatch();
        else if (line.startsWith(":")) continue;
        else {
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        }
      }
    }
    // An event not ended by a blank line was cut off: it is dropped, as EventSource does.
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("The service sent an answer this page cannot read. Try again.");
  }
}

// ------------------------------------------------------------------------------ one turn

const WAITING = "Looking through the documents…";

/** One question and its answer; `number` makes its ids unique, `position` is what it is called. */
class TurnView {
  constructor(number, position, question) {
    this.number = number;
    this.text = "";
    this.citations = new Map();
    this.documents = null;
    this.finished = false;
    this.conversationId = null;
    this.frame = 0;

    this.status = el("p", { className: "answer-status muted" }, WAITING);
    this.body = el("div", { className: "answer-text" });
    this.footnotes = el("ol", {
      className: "footnotes",
      "aria-label": "Cited passages",
      hidden: true,
    });
    this.sources = el("section", { className: "sources", hidden: true });
    this.meta = el("p", { className: "answer-meta muted" });
    this.problem = el("div", { className: "answer-problem" });
    this.answer = el(
      "div",
      { className: "answer", dataset: { state: "streaming" } },
      el("h3", { className: "visually-hidden" }, "Answer"),
      this.status,
      this.body,
      this.footnotes,
      this.sources,
      this.meta,
      this.problem,
    );
    this.root = el(
      "article",
      { className: "turn", "aria-label": `Question ${position}`, dataset: { position } },
      el(
        "div",
        { className: "question" },
        el("h3", { className: "visually-hidden" }, "You asked"),
        el("p", {}, question),
      ),
      this.answer,
    );
  }

  handle(name, data) {
    switch (name) {
      case "documents":
        this.documents = data.documents || [];
        this.status.textContent = this.documents.length
          ? `Reading ${this.documents.length} document${this.documents.length === 1 ? "" : "s"}…`
          : "No document seems to cover this.";
        this.renderSources();
        break;
      case "text":
        this.text += data.text || "";
        this.scheduleRender();
        break;
      case "citation":
        this.citations.set(data.number, data);
        this.scheduleRender();
        break;
      case "done":
        this.finish(data);
        break;
      case "error": {
        const error = data.error || data;
        throw new ApiError(error.message || "The answer failed part-way.", {
          type: error.type || "",
        });
      }
      default:
        break; // events this page does not know yet are not its business
    }
  }

  finish(answer) {
    this.finished = true;
    this.text = answer.answer || "";
    this.citations = new Map((answer.citations || []).map((c) => [c.number, c]));
    this.documents = answer.documents || [];
    this.conversationId = answer.conversation_id || null;
    cancelAnimationFrame(this.frame);
    keepingBottom(() => {
      this.render();
      this.renderSources();
      this.renderMeta(answer);
      this.status.remove();
    });
    this.answer.dataset.state = "done";
  }

  fail(message, onRetry) {
    cancelAnimationFrame(this.frame);
    if (this.text) this.render();
    this.status.remove();
    this.answer.dataset.state = onRetry ? "error" : "stopped";
    const notice = el("p", { className: onRetry ? "error" : "note", role: "alert" }, message);
    const actions = onRetry
      ? el("button", { type: "button", className: "retry", onclick: onRetry }, "Try again")
      : null;
    keepingBottom(() => this.problem.replaceChildren(notice, actions || ""));
  }

  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      keepingBottom(() => {
        this.render();
        if (this.status.isConnected && this.text) this.status.remove();
      });
    });
  }

  render() {
    const refs = new Map();
    this.body.replaceChildren(...renderBlocks(this.text, (n) => this.footnoteRef(n, refs)));
    const cited = [...this.citations.values()].sort((a, b) => a.number - b.number);
    this.footnotes.replaceChildren(...cited.map((c) => this.footnote(c, refs.get(c.number))));
    this.footnotes.hidden = cited.length === 0;
  }

  footnoteId(n) {
    return `turn-${this.number}-note-${n}`;
  }

  /** The superscript link for marker `[n]`, or null when no citation `n` is known (yet). */
  footnoteRef(n, refs) {
    const citation = this.citations.get(n);
    if (!citation) return null;
    const count = (refs.get(n) || []).length;
    const id = `turn-${this.number}-ref-${n}-${count + 1}`;
    refs.set(n, [...(refs.get(n) || []), id]);
    return el(
      "sup",
      { className: "ref" },
      el(
        "a",
        {
          id,
          href: `#${this.footnoteId(n)}`,
          "aria-label": `Source ${n}: ${citation.document_title}`,
          title: `${citation.document_title}: ${citation.cited_text}`,
        },
        String(n),
      ),
    );
  }

  footnote(citation, refIds) {
    const back =
      refIds && refIds.length
        ? el(
            "a",
            {
              className: "back",
              href: `#${refIds[0]}`,
              "aria-label": `Back to reference ${citation.number}`,
            },
            "↩",
          )
        : null;
    return el(
      "li",
      { id: this.footnoteId(citation.number), value: citation.number, tabindex: "-1" },
      el("blockquote", { className: "cited" }, citation.cited_text),
      el(
        "p",
        { className: "cited-source" },
        el("cite", {}, citation.document_title),
        where(citation),
        " ",
        back,
      ),
    );
  }

  renderSources() {
    const documents = this.documents || [];
    this.sources.hidden = documents.length === 0;
    if (!documents.length) return;
    const citedFiles = new Set([...this.citations.values()].map((c) => c.file_id));
    const heading = el("h4", { id: `turn-${this.number}-sources` }, "Sources");
    const items = documents.map((doc) =>
      el(
        "li",
        { className: citedFiles.has(doc.file_id) ? "cited-source-doc" : "" },
        el("span", { className: "source-title" }, doc.title),
        typeof doc.score === "number"
          ? el(
              "span",
              { className: "score", title: "How well the document matches the question (BM25)" },
              `score ${doc.score.toFixed(2)}`,
            )
          : null,
      ),
    );
    this.sources.setAttribute("aria-labelledby", heading.id);
    this.sources.replaceChildren(heading, el("ol", {}, items));
  }

  renderMeta(answer) {
    const parts = [
      answer.mode === "extractive" ? "quoted passages, no model" : answer.model || "claude",
    ];
    const usage = answer.usage;
    if (usage && answer.mode !== "extractive") {
      const cached = usage.cache_read_input_tokens || 0;
      const input = (usage.input_tokens || 0) + (usage.cache_creation_input_tokens || 0) + cached;
      parts.push(
        `${formatInteger(input)} tokens in` + (cached ? ` (${formatInteger(cached)} cached)` : ""),
        `${formatInteger(usage.output_tokens || 0)} out`,
      );
    }
    this.meta.textContent = parts.join(" · ");
  }
}

/** Run `update`, then scroll to the end if the reader was there before (following the answer). */
function keepingBottom(update) {
  const root = document.documentElement;
  const atBottom = root.scrollHeight - (window.scrollY + window.innerHeight) < 120;
  update();
  if (atBottom) window.scrollTo({ top: root.scrollHeight });
}

/** ", page 3" or ", pages 3–4" for PDF citations (end page exclusive); "" otherwise. */
function where(citation) {
  if (citation.type !== "page_location" || !citation.start_page_number) return "";
  const first = citation.start_page_number;
  const last = Math.max(first, (citation.end_page_number || first + 1) - 1);
  return first === last ? `, page ${first}` : `, pages ${first}–${last}`;
}

// -------------------------------------------------------------------- answer text as nodes

/**
 * The answer's light Markdown as DOM nodes: paragraphs, bullet and numbered lists, headings
 * as bold lines, **bold**, `code`, and `[n]` footnote markers (via `makeRef`).
 */
function renderBlocks(text, makeRef) {
  const blocks = [];
  let list = null;
  let paragraph = [];
  const flush = () => {
    // Lines of one paragraph are one flow of text, as in Markdown (and in PDF extracts).
    if (paragraph.length) blocks.push(el("p", {}, inline(paragraph.join(" "), makeRef)));
    paragraph = [];
  };
  for (const line of text.split("\n")) {
    const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
    const numbered = /^\s*(\d+)[.)]\s+(.*)$/.exec(line);
    const heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
    if (bullet || numbered) {
      flush();
      const kind = bullet ? "ul" : "ol";
      if (!list || list.localName !== kind) {
        list = el(kind);
        if (numbered) list.start = Number(numbered[1]);
        blocks.push(list);
      }
      list.append(el("li", {}, inline(bullet ? bullet[1] : numbered[2], makeRef)));
    } else if (heading) {
      flush();
      list = null;
      blocks.push(
        el("p", { className: "answer-heading" }, el("strong", {}, inline(heading[1], makeRef))),
      );
    } else if (line.trim() === "") {
      flush();
      list = null;
    } else {
      if (list && /^\s+/.test(line)) {
        list.lastElementChild.append(" ", ...inline(line.trim(), makeRef));
        continue;
      }
      list = null;
      paragraph.push(line);
    }
  }
  flush();
  return blocks;
}

function inline(text, makeRef) {
  const nodes = [];
  const pattern = /\*\*([^*]+)\*\*|`([^`]+)`|\[(\d+)\]/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    if (match[1] !== undefined) nodes.push(el("strong", {}, match[1]));
    else if (match[2] !== undefined) nodes.push(el("code", {}, match[2]));
    else nodes.push(makeRef(Number(match[3])) || match[0]);
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

// ------------------------------------------------------------------------------- start-up

async function loadInfo() {
  try {
    const response = await fetch(INFO_URL, { headers: requestHeaders() });
    if (response.status === 401) askForKey();
    if (!response.ok) return;
    const info = await response.json();
    modeNote.hidden = info.mode !== "extractive";
    modelLine.textContent =
      info.mode === "extractive" ? "Answers quote the documents." : `Answers by ${info.model}.`;
  } catch {
    // The first question will say what is wrong; the page stays usable meanwhile.
  }
}

// ------------------------------------------------------------------------------ the key

/** Show the key field: the service has keys, and this page has none that it accepts. */
function askForKey() {
  if (!keyForm.hidden) return;
  keyForm.hidden = false;
  keyInput.value = apiKey();
  keyInput.focus();
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  keepKey(key);
  keyForm.hidden = true;
  loadInfo();
  box.focus();
});

setStreaming(null);
loadInfo();
