// The admin page: the pool's documents a page at a time (GET /v1/documents), filtered by tag on
// the server and by text in the page, uploaded as multipart (POST /v1/documents) and deleted
// after a confirmation (DELETE /v1/documents/{id}). Every request carries the admin key, when
// one is given, as a bearer token.

import { ApiError, describeError, el, errorFromResponse, formatInteger } from "./common.js";

const DOCUMENTS_URL = "/v1/documents";
const KEY_STORAGE = "kpool.adminKey";

const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyStatus = document.getElementById("key-status");
const uploadForm = document.getElementById("upload-form");
const uploadButton = document.getElementById("upload-button");
const uploadStatus = document.getElementById("upload-status");
const filterForm = document.getElementById("filter-form");
const filterTag = document.getElementById("filter-tag");
const filterText = document.getElementById("filter-text");
const pageSize = document.getElementById("page-size");
const listStatus = document.getElementById("list-status");
const listSummary = document.getElementById("list-summary");
const tbody = document.querySelector("#documents tbody");
const previousButton = document.getElementById("previous-page");
const nextButton = document.getElementById("next-page");
const dialog = document.getElementById("confirm-delete");
const dialogText = document.getElementById("confirm-text");
const heading = document.getElementById("documents-heading");

// Page n starts after cursors[n] (null: the beginning).
const listing = { tag: "", limit: 25, cursors: [null], page: 0, nextCursor: null, rows: [] };

// ----------------------------------------------------------------------------- requests

function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

/** Headers of every request: the admin key as a bearer token when one is set. */
function requestHeaders(extra = {}) {
  const key = adminKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

async function api(url, options = {}) {
  const response = await fetch(url, { ...options, headers: requestHeaders(options.headers) });
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

function show(target, message, kind = "") {
  target.replaceChildren(message ? el("p", { className: kind }, message) : "");
}

// ------------------------------------------------------------------------------ the key

keyInput.value = adminKey();
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  keyStatus.textContent = key ? "Key in use for this tab." : "No key in use.";
  loadPage();
});

document.getElementById("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  keyInput.value = "";
  keyStatus.textContent = "Key forgotten.";
});

// ----------------------------------------------------------------------------- the list

async function loadPage() {
  listStatus.replaceChildren();
  tbody.setAttribute("aria-busy", "true");
  const params = new URLSearchParams({ limit: String(listing.limit) });
  const cursor = listing.cursors[listing.page];
  if (cursor) params.set("cursor", cursor);
  if (listing.tag) params.set("tag", listing.tag);
  try {
    const page = await (await api(`${DOCUMENTS_URL}?${params}`)).json();
    listing.rows = page.data;
    listing.nextCursor = page.next_cursor;
    renderRows();
  } catch (error) {
    listing.rows = [];
    listing.nextCursor = null;
    renderRows();
    show(listStatus, `Could not load the documents. ${describeError(error)}`, "error");
  } finally {
    tbody.removeAttribute("aria-busy");
  }
}

function matchesText(doc, text) {
  if (!text) return true;
  const haystack = [doc.title, doc.filename, ...(doc.tags || [])].join(" ").toLowerCase();
  return text
    .toLowerCase()
    .split(/\s+/)
    .every((word) => haystack.includes(word));
}

function renderRows() {
  const text = filterText.value.trim();
  const shown = listing.rows.filter((doc) => matchesText(doc, text));
  tbody.replaceChildren(...shown.map(documentRow));
  if (!shown.length) {
    tbody.append(
      el("tr", {}, el("td", { colspan: "7", className: "empty muted" }, emptyMessage(text))),
    );
  }
  previousButton.disabled = listing.page === 0;
  nextButton.disabled = !listing.nextCursor;
  const first = listing.page * listing.limit + 1;
  const range = listing.rows.length ? `${first}–${first + listing.rows.length - 1}` : "none";
  const filtered = text ? `, ${shown.length} matching “${text}”` : "";
  const tagged = listing.tag ? ` tagged “${listing.tag}”` : "";
  listSummary.textContent = `Page ${listing.page + 1}: documents ${range}${tagged}${filtered}`;
}

function emptyMessage(text) {
  if (text) return `No document in this page matches “${text}”.`;
  if (listing.tag) return `No document is tagged “${listing.tag}”.`;
  return "No documents yet: upload one above, or run kpool ingest.";
}

function documentRow(doc) {
  return el(
    "tr",
    { dataset: { id: doc.id } },
    el(
      "th",
      { scope: "row" },
      el("span", { className: "doc-title" }, doc.title),
      el("span", { className: "doc-id muted" }, doc.id),
    ),
    el("td", {}, doc.filename, el("span", { className: "muted" }, ` · ${doc.format}`)),
    el("td", {}, labels(doc.tags)),
    el("td", {}, labels(doc.groups, "everyone")),
    el("td", { className: "number" }, formatBytes(doc.size_bytes)),
    el("td", {}, el("time", { datetime: doc.updated_at }, formatDate(doc.updated_at))),
    el(
      "td",
      { className: "row-actions" },
      el(
        "button",
        {
          type: "button",
          className: "quiet delete",
          "aria-label": `Delete “${doc.title}”`,
          onclick: () => confirmDelete(doc),
        },
        "Delete",
      ),
    ),
  );
}

function labels(values, none = "") {
  if (!values || !values.length) return none ? el("span", { className: "muted" }, none) : "";
  return el(
    "ul",
    { className: "labels" },
    values.map((value) => el("li", {}, value)),
  );
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${formatInteger(bytes)} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

const dateFormat = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });

function formatDate(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : dateFormat.format(date);
}

filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  listing.tag = filterTag.value.trim();
  listing.limit = Number(pageSize.value);
  listing.cursors = [null];
  listing.page = 0;
  loadPage();
});

filterText.addEventListener("input", renderRows);

document.getElementById("clear-filter").addEventListener("click", () => {
  filterTag.value = "";
  filterText.value = "";
  filterForm.requestSubmit();
});

previousButton.addEventListener("click", () => {
  if (listing.page === 0) return;
  listing.page -= 1;
  loadPage();
});

nextButton.addEventListener("click", () => {
  if (!listing.nextCursor) return;
  listing.cursors[listing.page + 1] = listing.nextCursor;
  listing.page += 1;
  loadPage();
});

// ---------------------------------------------------------------------------- uploading

uploadForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = uploadForm.elements.file.files[0];
  if (!file) {
    show(uploadStatus, "Choose a file to upload.", "error");
    uploadForm.elements.file.focus();
    return;
  }
  const body = new FormData();
  body.append("file", file);
  for (const name of ["title", "tags", "groups", "source", "attributes"]) {
    const value = uploadForm.elements[name].value.trim();
    if (value) body.append(name, value);
  }
  uploadButton.disabled = true;
  show(uploadStatus, `Uploading ${file.name}…`, "muted");
  try {
    const doc = await (await api(DOCUMENTS_URL, { method: "POST", body })).json();
    show(uploadStatus, uploadOutcome(doc), "note");
    uploadForm.reset();
    await loadPage();
  } catch (error) {
    show(uploadStatus, `${file.name} was not uploaded. ${describeError(error)}`, "error");
  } finally {
    uploadButton.disabled = false;
  }
});

function uploadOutcome(doc) {
  if (doc.outcome === "added") return `Added “${doc.title}”.`;
  if (doc.outcome === "updated") return `Updated “${doc.title}” to version ${doc.version}.`;
  const reason = doc.reason ? ` (${doc.reason})` : "";
  return `“${doc.title}” is unchanged: the pool already has these bytes${reason}.`;
}

// ----------------------------------------------------------------------------- deleting

let pendingDelete = null;

function confirmDelete(doc) {
  pendingDelete = doc;
  dialog.returnValue = "";
  dialogText.textContent =
    `“${doc.title}” (${doc.filename}) stops being used for answers at once, ` +
    "and its uploaded file is removed.";
  dialog.showModal();
}

dialog.addEventListener("close", async () => {
  const doc = pendingDelete;
  pendingDelete = null;
  if (!doc || dialog.returnValue !== "delete") return;
  try {
    await api(`${DOCUMENTS_URL}/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    show(listStatus, `Deleted “${doc.title}”.`, "note");
  } catch (error) {
    const message =
      error instanceof ApiError && error.status === 404
        ? `“${doc.title}” was already deleted.`
        : `Could not delete “${doc.title}”. ${describeError(error)}`;
    show(listStatus, message, "error");
  }
  const status = listStatus.firstChild;
  await loadPage();
  if (status) listStatus.replaceChildren(status);
  heading.focus();
});

dialog.addEventListener("cancel", () => {
  dialog.returnValue = "cancel";
});

loadPage();
