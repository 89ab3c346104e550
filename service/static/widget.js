/*
 * Knowledge Pool widget: one tag adds a launcher and a chat panel to any page.
 *
 *   <script src="https://kpool.example.com/widget.js" data-key="..." async></script>
 *
 * Optional attributes: data-title (the panel's heading), data-position ("right" or "left").
 * The page's origin must be listed in the service's KPOOL_CORS_ORIGINS.
 *
 * Everything lives in one <kpool-widget> element at the end of <body>, inside its own Shadow
 * DOM: the page's CSS cannot reach the widget's markup, and the widget's CSS cannot reach the
 * page. Plain JavaScript with no build step, no dependencies and no external resources; server
 * text is only ever inserted as text nodes.
 */
(() => {
  "use strict";

  const TAG = "kpool-widget";
  const NOT_ALLOWED = "This site is not allowed to use the assistant.";
  const UNREACHABLE = "Could not reach the assistant. Check your connection and try again.";
  const SVG = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------------------ the widget

  class Widget {
    constructor(settings) {
      this.settings = settings;
      this.conversationId = null;
      this.inFlight = null;
      this.infoLoaded = false;
      this.build();
    }

    build() {
      const s = this.settings;
      this.launcher = element("button", {
        class: "launcher",
        type: "button",
        "aria-label": s.title,
        "aria-expanded": "false",
        "aria-controls": "kp-panel",
      });
      this.launcher.append(icon());
      this.launcher.addEventListener("click", () => this.toggle());

      const heading = element("h2", { id: "kp-title", class: "title" }, [s.title]);
      const restart = element("button", { type: "button", class: "text-button" }, [
        "New conversation",
      ]);
      restart.addEventListener("click", () => this.restart());
      const close = element("button", {
        type: "button",
        class: "close",
        "aria-label": "Close",
      }, ["\u00d7"]);
      close.addEventListener("click", () => this.close());

      this.note = element("p", { class: "note", hidden: "" }, [
        "Answers on this server are quoted passages from the documents, not written by " +
          "Claude (no API key is configured).",
      ]);
      this.thread = element("div", {
        class: "thread",
        role: "log",
        "aria-live": "polite",
        "aria-label": "Conversation",
      });
      this.empty = element("p", { class: "empty" }, [
        "Ask a question about company policies. Answers cite the documents they come from.",
      ]);
      this.thread.append(this.empty);
      this.problem = element("p", { class: "problem", role: "alert", hidden: "" });

      this.question = element("textarea", {
        id: "kp-question",
        rows: "2",
        maxlength: "4000",
        placeholder: "Type a question",
        autocomplete: "off",
      });
      this.question.addEventListener("keydown", (event) => this.onQuestionKey(event));
      this.send = element("button", { type: "submit", class: "send" }, ["Send"]);
      const form = element("form", { class: "ask" }, [
        element("label", { for: "kp-question", class: "visually-hidden" }, ["Your question"]),
        this.question,
        this.send,
      ]);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });

      this.panel = element("section", {
        id: "kp-panel",
        class: "panel",
        role: "dialog",
        "aria-modal": "false",
        "aria-labelledby": "kp-title",
        hidden: "",
      }, [
        element("header", { class: "head" }, [heading, restart, close]),
        this.note,
        this.thread,
        this.problem,
        form,
      ]);
      this.panel.addEventListener("keydown", (event) => {
        if (event.key === "Escape") {
          event.preventDefault();
          this.close();
        }
      });
      // Typing in the widget must not set off the page's own keyboard shortcuts: outside the
      // shadow root these events look as if they came from the host element, not a text field.
      for (const type of ["keydown", "keyup", "keypress"]) {
        this.panel.addEventListener(type, (event) => event.stopPropagation());
      }

      this.root = element("div", { class: `root ${s.position}` }, [this.panel, this.launcher]);
    }

    toggle() {
      if (this.panel.hidden) {
        this.open();
      } else {
        this.close();
      }
    }

    open() {
      this.panel.hidden = false;
      this.launcher.setAttribute("aria-expanded", "true");
      this.root.classList.add("open");
      this.question.focus();
      if (!this.infoLoaded) {
        this.infoLoaded = true;
        this.loadInfo();
      }
    }

    close() {
      this.panel.hidden = true;
      this.launcher.setAttribute("aria-expanded", "false");
      this.root.classList.remove("open");
      this.launcher.focus();
    }

    restart() {
      if (this.inFlight) {
        this.inFlight.abort();
        this.settle();
      }
      this.conversationId = null;
      this.thread.replaceChildren(this.empty);
      this.showProblem("");
      this.question.focus();
    }

    onQuestionKey(event) {
      // Enter sends, Shift+Enter is a new line; keys that confirm an IME composition do not send.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    }

    async loadInfo() {
      try {
        const response = await this.request("GET", "/v1/info");
        if (response.ok) {
          const info = await response.json();
          this.note.hidden = info.mode !== "extractive";
        } else {
          const problem = await problemOf(response);
          if (problem === NOT_ALLOWED) {
            this.showProblem(problem);
          }
        }
      } catch (error) {
        const problem = await this.explainFailure(error);
        if (problem === NOT_ALLOWED) {
          this.showProblem(problem);
        }
      }
    }

    submit() {
      const question = this.question.value.trim();
      if (!question || this.inFlight) {
        return;
      }
      this.question.value = "";
      this.showProblem("");
      this.ask(question);
    }

    async ask(question) {
      const turn = new Turn(question);
      this.empty.remove();
      this.thread.append(turn.element);
      this.thread.scrollTop = this.thread.scrollHeight;
      const controller = new AbortController();
      this.inFlight = controller;
      this.send.disabled = true;
      this.thread.setAttribute("aria-busy", "true");
      const sentConversation = this.conversationId;
      try {
        const body = { question, stream: true };
        if (sentConversation) {
          body.conversation_id = sentConversation;
        }
        const response = await this.request("POST", "/v1/ask", body, controller.signal);
        if (!response.ok) {
          if (response.status === 404 && sentConversation) {
            this.conversationId = null;
            turn.fail("That conversation has expired; ask again to start a new one.");
          } else {
            turn.fail(await problemOf(response));
          }
          return;
        }
        await readEvents(response.body, (name, data) => this.onEvent(turn, name, data));
        turn.finish();
      } catch (error) {
        if (error.name !== "AbortError") {
          turn.fail(await this.explainFailure(error));
        }
      } finally {
        if (this.inFlight === controller) {
          this.settle();
        }
      }
    }

    // Ready for the next question.
    settle() {
      this.inFlight = null;
      this.send.disabled = false;
      this.thread.removeAttribute("aria-busy");
    }

    onEvent(turn, name, data) {
      const payload = JSON.parse(data);
      if (name === "documents") {
        turn.reading(payload.documents || []);
      } else if (name === "text") {
        turn.addText(payload.text || "");
      } else if (name === "citation") {
        turn.addCitation(payload);
      } else if (name === "done") {
        if (payload.conversation_id) {
          this.conversationId = payload.conversation_id;
        }
        turn.complete(payload);
      } else if (name === "error") {
        turn.fail(messageOf(payload.error));
      }
    }

    request(method, path, body, signal) {
      const headers = { Accept: body ? "text/event-stream" : "application/json" };
      if (body) {
        headers["Content-Type"] = "application/json";
      }
      if (this.settings.key) {
        headers.Authorization = `Bearer ${this.settings.key}`;
      }
      return fetch(this.settings.base + path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        credentials: "omit",
        signal,
      });
    }

    // A refused preflight and a dropped connection look the same to fetch: a TypeError. A GET
    // with no extra headers needs no preflight, and the service's refusal of it is readable, so
    // one such request tells the two apart.
    async explainFailure(error) {
      if (!(error instanceof TypeError)) {
        return UNREACHABLE;
      }
      try {
        const probe = await fetch(`${this.settings.base}/v1/info`, { credentials: "omit" });
        if (!probe.ok && (await problemOf(probe)) === NOT_ALLOWED) {
          return NOT_ALLOWED;
        }
      } catch (_unreachable) {
        // the service is down or the network is: the message below says so
      }
      return UNREACHABLE;
    }

    showProblem(message) {
      this.problem.textContent = message;
      this.problem.hidden = !message;
    }
  }

  // -------------------------------------------------------------- one question and its answer

  class Turn {
    constructor(question) {
      this.text = "";
      this.citations = new Map();
      this.footnotes = new Map();
      this.done = false;
      this.status = element("p", { class: "status" }, ["Looking for the answer\u2026"]);
      this.answer = element("div", { class: "answer-text" });
      this.sources = element("ol", { class: "sources", "aria-label": "Sources", hidden: "" });
      this.element = element("div", { class: "turn" }, [
        element("p", { class: "question" }, [question]),
        element("div", { class: "answer" }, [this.status, this.answer, this.sources]),
      ]);
    }

    reading(documents) {
      const count = documents.length;
      this.status.textContent = count
        ? `Reading ${count} document${count === 1 ? "" : "s"}\u2026`
        : "No document seems to cover this; answering anyway\u2026";
    }

    addText(text) {
      this.text += text;
      this.status.remove();
      this.render(() => this.renderText());
    }

    addCitation(citation) {
      this.citations.set(citation.number, citation);
      this.render(() => {
        this.renderSources();
        this.renderText();
      });
    }

    // The final answer replaces whatever the deltas built.
    complete(answer) {
      this.text = answer.answer || "";
      this.citations = new Map((answer.citations || []).map((c) => [c.number, c]));
      this.status.remove();
      this.render(() => {
        this.renderText();
        this.renderSources();
      });
      this.done = true;
    }

    finish() {
      if (!this.done) {
        this.fail("The answer was cut off. Try asking again.");
      }
    }

    fail(message) {
      this.status.remove();
      this.element.querySelector(".answer").append(
        element("p", { class: "failed", role: "alert" }, [message]),
      );
      this.done = true;
    }

    // While the reader is at the end of the thread, the thread follows the growing answer.
    render(update) {
      const thread = this.element.parentElement;
      const following = thread && thread.scrollHeight - thread.scrollTop - thread.clientHeight < 48;
      update();
      if (following) {
        thread.scrollTop = thread.scrollHeight;
      }
    }

    // Paragraphs are separated by blank lines. Inside one, a line break is kept before a list
    // item and is otherwise a space (quoted passages keep their source's hard wrapping).
    // Footnote markers such as [1] become buttons that lead to the numbered sources.
    renderText() {
      const paragraphs = this.text.split(/\n[ \t]*\n/).filter((text) => text.trim());
      this.answer.replaceChildren(
        ...paragraphs.map((text) => {
          const lines = text.trim().replace(/\n(?![ \t]*(?:[-*\u2022]|\d+[.)])[ \t])/g, " ");
          const nodes = lines.split(/(\[\d+\])/).map((part) => {
            const number = /^\[(\d+)\]$/.exec(part);
            const citation = number && this.citations.get(Number(number[1]));
            return citation ? this.marker(citation) : part;
          });
          return element("p", {}, nodes.filter((node) => node !== ""));
        }),
      );
    }

    marker(citation) {
      const button = element("button", {
        type: "button",
        class: "ref",
        "aria-label": `Source ${citation.number}: ${citation.document_title}`,
      }, [String(citation.number)]);
      button.addEventListener("click", () => {
        const note = this.footnotes.get(citation.number);
        if (note) {
          note.focus();
        }
      });
      return element("sup", {}, [button]);
    }

    renderSources() {
      const numbers = [...this.citations.keys()].sort((a, b) => a - b);
      this.footnotes = new Map(numbers.map((n) => [n, footnote(this.citations.get(n))]));
      this.sources.replaceChildren(...this.footnotes.values());
      this.sources.hidden = numbers.length === 0;
    }
  }

  function footnote(citation) {
    const where = citation.type === "page_location" ? pages(citation) : "";
    const passage = (citation.cited_text || "").trim().replace(/\s+/g, " ");
    const shown = passage.length > 280 ? `${passage.slice(0, 277)}\u2026` : passage;
    return element("li", { value: String(citation.number), tabindex: "-1" }, [
      element("span", { class: "doc-title" }, [citation.document_title || "Untitled document"]),
      where ? " " : "",
      where ? element("span", { class: "where" }, [where]) : "",
      " ",
      element("q", { class: "cited" }, [shown]),
    ]);
  }

  function pages(citation) {
    const first = citation.start_page_number;
    const last = (citation.end_page_number || first + 1) - 1;
    return last > first ? `pages ${first}\u2013${last}` : `page ${first}`;
  }

  // ---------------------------------------------------------------------------- the protocol

  // Server-sent events, read by hand from the response stream (EventSource cannot POST).
  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    let name = "";
    let data = [];
    const line = (text) => {
      if (text === "") {
        if (data.length) {
          onEvent(name || "message", data.join("\n"));
        }
        name = "";
        data = [];
        return;
      }
      if (text.startsWith(":")) {
        return;
      }
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      const value = colon < 0 ? "" : text.slice(colon + 1).replace(/^ /, "");
      if (field === "event") {
        name = value;
      } else if (field === "data") {
        data.push(value);
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      let text = pending + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
      // A chunk ending in "\r" may be half of a "\r\n": keep it for the next chunk.
      const held = !done && text.endsWith("\r") ? "\r" : "";
      text = held ? text.slice(0, -1) : text;
      const lines = text.split(/\r\n|\r|\n/);
      pending = lines.pop() + held;
      lines.forEach(line);
      if (done) {
        return; // an event the stream did not finish with a blank line is dropped, as in EventSource
      }
    }
  }

  async function problemOf(response) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch (_notJson) {
      // a proxy's HTML error page, say: the status alone is described
    }
    if (error && error.type === "origin_not_allowed") {
      return NOT_ALLOWED;
    }
    let message = messageOf(error, response.status);
    const retry = response.headers.get("Retry-After");
    if (retry && /^\d+$/.test(retry)) {
      message += ` Try again in ${retry} seconds.`;
    }
    return message;
  }

  function messageOf(error, status) {
    if (error && typeof error.message === "string" && error.message) {
      const text = error.message.trim();
      return /[.!?]$/.test(text) ? text : `${text}.`;
    }
    return status
      ? `The assistant could not answer (HTTP ${status}).`
      : "The assistant could not answer.";
  }

  // ------------------------------------------------------------------------------- the DOM

  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, value);
    }
    node.append(...(children || []));
    return node;
  }

  function icon() {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const shapes = [
      ["chat", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"],
      ["cross", "M6 6l12 12M18 6L6 18"],
    ];
    for (const [name, d] of shapes) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("class", name);
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }

  // Sizes are in px, not rem, so the page's root font size does not scale the widget.
  // :host is reset with !important because, across a shadow boundary, the inner !important
  // outranks the page's own (a page rule "* { color: red !important }" matches the host too).
  const CSS = `
:host {
  all: initial !important;
}
[hidden] {
  display: none !important;
}
.root, .root * {
  box-sizing: border-box;
}
.root {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px;
  line-height: 1.45;
  color: #1f2328;
  font-weight: 400;
  font-style: normal;
  letter-spacing: normal;
  text-align: left;
  text-transform: none;
  -webkit-font-smoothing: antialiased;
}
button, textarea {
  font: inherit;
  color: inherit;
  margin: 0;
}
.launcher {
  position: fixed;
  bottom: 20px;
  right: 20px;
  z-index: 2147483000;
  display: flex;
  align-items: center;
  justify-content: center;
  width: 56px;
  height: 56px;
  padding: 0;
  border: none;
  border-radius: 50%;
  background: #2151c5;
  color: #ffffff;
  cursor: pointer;
  box-shadow: 0 4px 14px rgba(15, 23, 42, 0.28);
}
.left .launcher {
  right: auto;
  left: 20px;
}
.launcher:hover {
  background: #1a43a6;
}
.launcher svg {
  width: 26px;
  height: 26px;
  fill: none;
  stroke: currentColor;
  stroke-width: 2;
  stroke-linecap: round;
  stroke-linejoin: round;
}
.launcher .cross, .open .launcher .chat {
  display: none;
}
.open .launcher .cross {
  display: inline;
}
button:focus-visible, textarea:focus-visible, li:focus {
  outline: 3px solid #f0b400;
  outline-offset: 2px;
}
.panel {
  position: fixed;
  bottom: 88px;
  right: 20px;
  z-index: 2147483000;
  display: flex;
  flex-direction: column;
  width: 400px;
  height: min(600px, calc(100vh - 112px));
  background: #ffffff;
  border: 1px solid #d0d7de;
  border-radius: 12px;
  box-shadow: 0 12px 40px rgba(15, 23, 42, 0.25);
  overflow: hidden;
}
.left .panel {
  right: auto;
  left: 20px;
}
.head {
  display: flex;
  align-items: center;
  gap: 8px;
  padding: 12px 12px 12px 16px;
  background: #2151c5;
  color: #ffffff;
}
.title {
  flex: 1;
  margin: 0;
  font-size: 16px;
  font-weight: 600;
  line-height: 1.3;
}
.text-button {
  padding: 4px 8px;
  border: 1px solid rgba(255, 255, 255, 0.6);
  border-radius: 6px;
  background: transparent;
  color: #ffffff;
  font-size: 13px;
  white-space: nowrap;
  cursor: pointer;
}
.close {
  width: 32px;
  height: 32px;
  padding: 0;
  border: none;
  border-radius: 6px;
  background: transparent;
  color: #ffffff;
  font-size: 24px;
  line-height: 1;
  cursor: pointer;
}
.text-button:hover, .close:hover {
  background: rgba(255, 255, 255, 0.15);
}
.note {
  margin: 0;
  padding: 8px 16px;
  background: #fff8c5;
  border-bottom: 1px solid #eac54f;
  font-size: 13px;
}
.thread {
  flex: 1;
  overflow-y: auto;
  padding: 12px 16px;
}
.empty {
  margin: 8px 0;
  color: #57606a;
}
.turn {
  margin-bottom: 16px;
}
.question {
  margin: 0 0 8px auto;
  max-width: 85%;
  width: fit-content;
  padding: 8px 12px;
  border-radius: 12px 12px 2px 12px;
  background: #e8eefc;
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
.answer {
  max-width: 100%;
}
.status {
  margin: 0;
  color: #57606a;
  font-style: italic;
}
.answer-text p {
  margin: 0 0 10px;
  white-space: pre-line;
  overflow-wrap: anywhere;
}
.answer-text p:last-child {
  margin-bottom: 0;
}
.answer-text:empty {
  display: none;
}
sup {
  line-height: 0;
}
.ref {
  padding: 1px 3px;
  line-height: 1;
  border: none;
  border-radius: 4px;
  background: #e8eefc;
  color: #2151c5;
  font-size: 11px;
  font-weight: 600;
  cursor: pointer;
}
.sources {
  margin: 10px 0 0;
  padding: 8px 0 0 22px;
  border-top: 1px solid #d8dee4;
  font-size: 13px;
  color: #424a53;
}
.sources li {
  margin-bottom: 6px;
  border-radius: 4px;
}
.doc-title {
  font-weight: 600;
  color: #1f2328;
}
.where {
  color: #57606a;
}
.cited {
  display: block;
  margin-top: 2px;
  font-style: italic;
  overflow-wrap: anywhere;
}
.failed, .problem {
  margin: 8px 0 0;
  padding: 8px 12px;
  border-radius: 8px;
  background: #ffebe9;
  border: 1px solid #ff8182;
  color: #82071e;
}
.problem {
  margin: 0 16px 8px;
}
.ask {
  display: flex;
  gap: 8px;
  padding: 12px 16px;
  border-top: 1px solid #d8dee4;
}
textarea {
  flex: 1;
  min-height: 44px;
  max-height: 140px;
  padding: 8px 10px;
  border: 1px solid #8c959f;
  border-radius: 8px;
  background: #ffffff;
  resize: vertical;
}
.send {
  align-self: flex-end;
  min-height: 44px;
  padding: 0 16px;
  border: none;
  border-radius: 8px;
  background: #2151c5;
  color: #ffffff;
  font-weight: 600;
  cursor: pointer;
}
.send:disabled {
  background: #8c959f;
  cursor: default;
}
.visually-hidden {
  position: absolute;
  width: 1px;
  height: 1px;
  overflow: hidden;
  clip: rect(0 0 0 0);
  white-space: nowrap;
}
@media (max-width: 480px) {
  .panel, .left .panel {
    inset: 0;
    width: auto;
    height: auto;
    border: none;
    border-radius: 0;
  }
  .open .launcher {
    display: none;
  }
}
`;

  // ---------------------------------------------------------------------------- start here

  // The element registry doubles as the "already loaded" flag: a second copy of this script
  // finds the name taken and does nothing, and no global variable is needed.
  if (!window.customElements || !Element.prototype.attachShadow || customElements.get(TAG)) {
    return;
  }
  customElements.define(TAG, class extends HTMLElement {});

  const script = document.currentScript || findOwnScript();
  if (!script) {
    return;
  }
  const src = new URL(script.src, document.baseURI);
  const config = {
    base: src.origin + src.pathname.replace(/\/widget\.js$/, ""),
    key: script.dataset.key || "",
    title: script.dataset.title || "Ask our documents",
    position: script.dataset.position === "left" ? "left" : "right",
  };

  if (document.body) {
    start(config);
  } else {
    document.addEventListener("DOMContentLoaded", () => start(config), { once: true });
  }

  function findOwnScript() {
    const scripts = document.querySelectorAll("script[src]");
    for (let i = scripts.length - 1; i >= 0; i -= 1) {
      if (new URL(scripts[i].src, document.baseURI).pathname.endsWith("/widget.js")) {
        return scripts[i];
      }
    }
    return null;
  }

  function start(config) {
    const host = document.createElement(TAG);
    // Open rather than closed: a closed root hides nothing from scripts on the same page (they
    // could wrap attachShadow first), and an open one lets tests and assistive tools reach in.
    const shadow = host.attachShadow({ mode: "open" });
    adoptStyles(shadow);
    const widget = new Widget(config);
    shadow.append(widget.root);
    document.body.append(host);
  }

  // Constructable stylesheets are not <style> elements, so a page whose Content-Security-Policy
  // forbids inline styles still lets them apply.
  function adoptStyles(shadow) {
    if ("adoptedStyleSheets" in shadow && "replaceSync" in CSSStyleSheet.prototype) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.append(element("style", {}, [CSS]));
    }
  }
})();
