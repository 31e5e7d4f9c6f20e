// The REST API, signed in by the HttpOnly session cookie. State-changing requests carry the
// session's CSRF token in X-Airlock-CSRF (see internal/api/websession.go).

export interface WebSession {
  authenticated: boolean;
  user?: string;
  role?: "user" | "auditor" | "admin";
  groups?: string[];
  expires_at?: string;
  csrf_token?: string;
  methods: { name: string; label: string; url: string }[];
}

export interface Session {
  id: string;
  user: string;
  target: string;
  type: string;
  client_addr: string;
  started_at: string;
  ended_at: string | null;
  end_reason: string;
  events: number;
  head: string;
  status: "active" | "ended";
  hold: boolean;
}

export interface Ev {
  seq: number;
  type: string;
  offset_ns: number;
  time: string;
  data: any;
  rows?: unknown[][];
  rows_error?: string;
  revealed_rows?: unknown[][];
  reveal_error?: string;
  revealed_data?: any;
  text?: string;
  base64?: string;
  revealed_text?: string;
}

export class APIError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

let csrf = "";
let onUnauthorized: () => void = () => {};

export function setCSRF(t: string) {
  csrf = t;
}

export function setOnUnauthorized(f: () => void) {
  onUnauthorized = f;
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-Airlock-CSRF"] = csrf || "login";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let j: any = undefined;
  try {
    j = text ? JSON.parse(text) : undefined;
  } catch {
    throw new APIError(res.status, "bad_response", `${method} ${path}: ${res.status} ${text.slice(0, 200)}`);
  }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith("/api/v1/auth/")) onUnauthorized();
    throw new APIError(res.status, j?.code ?? "error", j?.error ?? `${res.status}`);
  }
  return j as T;
}

export function qs(params: Record<string, string | number | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? "?" + s : "";
}
