// Helpers shared by the chat and admin pages: building DOM nodes (never from HTML strings, since
// document text is untrusted), and turning failed requests into sentences a person can act on.

/**
 * Build an element. `props` become attributes (`className` and `dataset` are special, `on*`
 * functions become listeners); children are nodes or strings, and strings are always text.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
}

/** An error the service reported (`{"error": {"type", "message"}}`) or a failed request. */
export class ApiError extends Error {
  constructor(message, { status = 0, type = "", retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

/** The `ApiError` a non-2xx response stands for, with the service's own message. */
export async function errorFromResponse(response) {
  let error = {};
  try {
    const body = await response.json();
    error = (body && body.error) || {};
  } catch {
    // Not JSON (a proxy's error page, say): fall back to the status line.
  }
  const message =
    error.message || `The service answered ${response.status} ${response.statusText}.`;
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(message, {
    status: response.status,
    type: error.type || "",
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : null,
  });
}

/** One plain sentence (or two) for any error a request can end with. */
export function describeError(error) {
  if (error && error.name === "AbortError") return "Stopped.";
  if (error instanceof ApiError) {
    let message = sentence(error.message);
    if (error.status === 401 || error.status === 403) {
      message += " Check the API key.";
    }
    if (error.retryAfter && !/try again/i.test(message)) {
      message += ` Try again in ${error.retryAfter} second${error.retryAfter === 1 ? "" : "s"}.`;
    }
    return message;
  }
  if (error instanceof TypeError) {
    return "Could not reach the service. Check your connection and try again.";
  }
  return sentence((error && error.message) || "Something went wrong.");
}

function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return "Something went wrong.";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

const integer = new Intl.NumberFormat("en");

/** 1234 -> "1,234". */
export function formatInteger(value) {
  return integer.format(value);
}
