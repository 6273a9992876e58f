// The API client: the token in session storage, JSON reads under /v1, and the live event
// stream read with fetch (EventSource cannot send the Authorization header).

const TOKEN_KEY = "fleet.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer that was not 2xx: its status and the API's error message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET `path` (under /v1) with the token; the parsed JSON answer. */
export async function get(path) {
  const response = await fetch(`/v1${path}`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
    cache: "no-store",
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error.message;
    } catch {
      // Not JSON: the status line says enough.
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

/** POST `body` as JSON to `path` (under /v1) with the token; the parsed JSON answer. */
export async function post(path, body) {
  const response = await fetch(`/v1${path}`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${token()}`,
      Accept: "application/json",
      "Content-Type": "application/json",
    },
    body: JSON.stringify(body),
    cache: "no-store",
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, answer?.error?.message ?? `${response.status} ${response.statusText}`);
    error.problems = answer?.error?.problems ?? [];
    throw error;
  }
  return answer;
}

/**
 * Reads the server-sent events at `path` (under /v1) until the server ends the stream or
 * `signal` aborts: `onFrame({id, event, data})` for each frame. No reconnection.
 */
export async function frames(path, onFrame, signal) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
  const response = await fetch(`/v1${path}`, { headers, signal, cache: "no-store" });
  if (!response.ok || !response.body) throw new ApiError(response.status, `stream answered ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const push = sseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    for (const frame of push(value)) onFrame(frame);
  }
}

/** Every agent, page by page. */
export async function allAgents() {
  return allPages("/agents", 1000);
}

/** Every policy, a page at a time (a page of policies is larger than one of agents). */
export async function allPolicies() {
  return allPages("/policies", 500);
}

/** Every item of a paged list, `size` at a time until a page comes back short. */
async function allPages(path, size) {
  const items = [];
  for (let offset = 0; ; offset += size) {
    const page = await get(`${path}?limit=${size}&offset=${offset}`);
    items.push(...page);
    if (page.length < size) return items;
  }
}

/**
 * Parses server-sent events from text chunks: call `push(chunk)`, get back the complete
 * frames `{id, event, data}` it finished.
 */
export function sseParser() {
  let buffer = "";
  let frame = { id: null, event: "message", data: [] };
  return function push(chunk) {
    buffer += chunk;
    const frames = [];
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (frame.data.length > 0) {
          frames.push({ id: frame.id, event: frame.event, data: frame.data.join("\n") });
        }
        frame = { id: frame.id, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") frame.data.push(value);
      else if (field === "event") frame.event = value;
      else if (field === "id") frame.id = value;
    }
    return frames;
  };
}

/**
 * Follows /v1/events/stream until `signal` aborts: `onEvent(eventJson)` for each event,
 * `onState("live" | "reconnecting" | "signed-out")` as the connection changes. Reconnects
 * after a drop with Last-Event-ID, so no event is missed.
 */
export async function follow(onEvent, onState, signal) {
  let lastId = null;
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch("/v1/events/stream", { headers, signal, cache: "no-store" });
      if (response.status === 401) {
        onState("signed-out");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      onState("live");
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const push = sseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const frame of push(value)) {
          if (frame.id !== null) lastId = frame.id;
          try {
            onEvent(JSON.parse(frame.data));
          } catch {
            // A keep-alive or a frame that is not an event: nothing to refresh.
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
