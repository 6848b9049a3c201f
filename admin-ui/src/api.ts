// The daemon's HTTP API as the dashboard uses it: same-origin fetches with the session cookie, the session's
// CSRF token on every state-changing request, and the API's error messages surfaced as they are.

export type Role = "admin" | "member";
export interface Session {
  user: string;
  role: Role;
  csrf: string;
  must_change_password: boolean;
}

let csrf = "";
export function setCsrf(token: string) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public retryAfter?: number,
  ) {
    super(message);
  }
}

async function errorOf(r: Response): Promise<ApiError> {
  let message = `${r.status} ${r.statusText}`;
  try {
    const j = await r.json();
    const e = j?.error;
    message = typeof e === "string" ? e : e?.message ?? message;
  } catch {
    /* not JSON: keep the status line */
  }
  const retry = Number(r.headers.get("retry-after") ?? "") || undefined;
  return new ApiError(r.status, message, retry);
}

/** Listeners told when a request finds the session gone (the app shows the sign-in page). */
const onSignedOut: Array<() => void> = [];
export function whenSignedOut(f: () => void) {
  onSignedOut.push(f);
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    const e = await errorOf(r);
    if (r.status === 401 && !path.startsWith("/auth/login")) onSignedOut.forEach((f) => f());
    throw e;
  }
  if (r.status === 204) return undefined as T;
  const type = r.headers.get("content-type") ?? "";
  return (type.includes("json") ? await r.json() : await r.text()) as T;
}

export const get = <T>(path: string) => request<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, body ?? {});
export const put = <T>(path: string, body: unknown) => request<T>("PUT", path, body);
export const patch = <T>(path: string, body: unknown) => request<T>("PATCH", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

export interface StreamStats {
  tokens: number;
  seconds: number;
}

/** Streams a chat completion (OpenAI SSE), calling `onText` with each delta; resolves with the usage. */
export async function streamChat(
  model: string,
  messages: Array<{ role: string; content: string }>,
  onText: (delta: string) => void,
  options: { temperature?: number; max_tokens?: number },
  signal?: AbortSignal,
): Promise<{
  usage?: { completion_tokens: number; prompt_tokens: number };
  seconds: number;
  firstTokenSeconds?: number;
  requestId: string | null;
}> {
  const t0 = performance.now();
  const r = await fetch("/v1/chat/completions", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true }, ...options }),
    signal,
  });
  if (!r.ok || !r.body) throw await errorOf(r);
  const requestId = r.headers.get("x-request-id");
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let usage;
  let first: number | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.error) throw new ApiError(500, j.error.message ?? String(j.error));
        const delta = j.choices?.[0]?.delta?.content;
        if (delta) {
          first ??= (performance.now() - t0) / 1000;
          onText(delta);
        }
        if (j.usage) usage = j.usage;
      }
    }
  }
  return { usage, seconds: (performance.now() - t0) / 1000, firstTokenSeconds: first, requestId };
}

export interface RequestRow {
  status: string;
  prompt_tokens: number;
  completion_tokens: number;
  duration_ms: number;
  device: string | null;
  energy_joules: number | null;
  energy_source: string | null;
}

/** The ledger's row of a finished request (written just after the stream ends: a few retries). */
export async function finishedRequest(id: string): Promise<RequestRow | null> {
  for (let i = 0; i < 10; i++) {
    try {
      const row = await get<RequestRow>(`/v1/me/requests/${encodeURIComponent(id)}`);
      if (row.status !== "running") return row;
    } catch {
      /* not written yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return null;
}
