import "asciinema-player/dist/bundle/asciinema-player.css";
import "./style.css";
import { api, APIError, qs, setCSRF, setOnUnauthorized, Session, WebSession } from "./api";
import { clear, fmtDuration, fmtTime, h } from "./dom";
import { sessionPage } from "./session";
import { livePage, liveListPage } from "./live";
import { auditPage, identityPage, policiesPage, targetsPage } from "./admin";

export let me: WebSession = { authenticated: false, methods: [] };

const app = document.getElementById("app")!;
let disposeCurrent: (() => void) | undefined;

export function canReadAll(): boolean {
  return me.role === "admin" || me.role === "auditor";
}

export function go(hash: string) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function nav(): HTMLElement {
  const links: [string, string][] = [
    ["#/sessions", "Sessions"],
    ["#/live", "Live"],
    ["#/targets", "Targets"],
  ];
  if (canReadAll()) links.push(["#/policies", "Policies"], ["#/audit", "Audit log"]);
  links.push(["#/identity", "Users"]);
  const cur = location.hash.split("?")[0];
  return h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/sessions" }, "Airlock"),
    h(
      "nav",
      { "aria-label": "Main" },
      links.map(([href, label]) => h("a", { href, "aria-current": cur.startsWith(href) ? "page" : null }, label)),
    ),
    h(
      "div",
      { class: "who" },
      h("span", { id: "whoami" }, `${me.user} (${me.role})`),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: async () => {
            await api("DELETE", "/api/v1/auth/session").catch(() => {});
            me = { authenticated: false, methods: me.methods };
            go("#/login");
          },
        },
        "Sign out",
      ),
    ),
  );
}

export function page(title: string, ...content: (Node | string)[]): HTMLElement {
  document.title = `${title} · Airlock`;
  return h("main", { id: "main" }, h("h1", null, title), ...content);
}

export function errorBox(e: unknown): HTMLElement {
  const msg = e instanceof APIError ? `${e.message} (${e.status} ${e.code})` : String(e);
  return h("p", { class: "error", role: "alert" }, msg);
}

async function loadSession() {
  me = await api<WebSession>("GET", "/api/v1/auth/session");
  setCSRF(me.csrf_token ?? "");
}

function loginPage(params: URLSearchParams): HTMLElement {
  const err = h("div", { "aria-live": "polite", id: "signin-error" });
  // A sign-in with an identity provider that failed comes back here with its reason.
  if (params.get("error")) err.appendChild(h("p", { class: "error", role: "alert" }, params.get("error")!));
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        clear(err);
        try {
          me = await api<WebSession>("POST", "/api/v1/auth/session", { username: user.value, password: pass.value });
          setCSRF(me.csrf_token ?? "");
          go("#/sessions");
        } catch (x) {
          err.appendChild(errorBox(x));
        }
      },
    },
    h("label", { for: "username" }, "User"),
    user,
    h("label", { for: "password" }, "Password"),
    pass,
    h("button", { type: "submit", id: "signin" }, "Sign in"),
    err,
  );
  const others = me.methods.filter((m) => m.name !== "password");
  document.title = "Sign in · Airlock";
  return h(
    "main",
    { id: "main", class: "narrow" },
    h("h1", null, "Sign in to Airlock"),
    form,
    others.length ? h("p", { class: "signin-others" }, others.map((m) => h("a", { class: "button", href: m.url, "data-method": m.name }, m.label))) : null,
  );
}

// ---- sessions list ----

const PAGE = 50;

function sessionsPage(params: URLSearchParams): HTMLElement {
  const field = (name: string, label: string, attrs: Record<string, string> = {}) => {
    const input = h("input", { id: "f-" + name, name, value: params.get(name) ?? "", ...attrs });
    return h("div", { class: "field" }, h("label", { for: "f-" + name }, label), input);
  };
  const select = (name: string, label: string, options: [string, string][]) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: "f-" + name }, label),
      h("select", { id: "f-" + name, name }, options.map(([v, l]) => h("option", { value: v, selected: params.get(name) === v }, l))),
    );
  const toLocal = (iso: string | null) => (iso ? new Date(iso).toISOString().slice(0, 16) : "");
  const from = h("input", { id: "f-from", name: "from", type: "datetime-local", value: toLocal(params.get("from")) });
  const to = h("input", { id: "f-to", name: "to", type: "datetime-local", value: toLocal(params.get("to")) });
  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      onsubmit: (e: Event) => {
        e.preventDefault();
        const fd = new FormData(form);
        const p = new URLSearchParams();
        for (const [k, v] of fd.entries()) {
          if (!v) continue;
          if (k === "from" || k === "to") p.set(k, new Date(String(v) + "Z").toISOString());
          else p.set(k, String(v));
        }
        go("#/sessions?" + p.toString());
      },
    },
    field("q", "Text (statement or command)", { type: "search", placeholder: "e.g. customers" }),
    field("user", "User"),
    field("target", "Target"),
    select("type", "Type", [["", "any"], ["postgres", "PostgreSQL"], ["mysql", "MySQL"], ["ssh", "SSH"], ["audit", "audit log"]]),
    select("status", "Status", [["", "any"], ["active", "active"], ["ended", "ended"]]),
    h("div", { class: "field" }, h("label", { for: "f-from" }, "From (UTC)"), from),
    h("div", { class: "field" }, h("label", { for: "f-to" }, "To (UTC)"), to),
    h("div", { class: "field" }, h("button", { type: "submit", id: "search" }, "Search")),
  );
  const results = h("div", { id: "results", "aria-live": "polite" }, "Loading…");
  const main = page("Sessions", form, results);
  const load = async () => {
    try {
      const p: Record<string, string> = {};
      for (const k of ["q", "user", "target", "type", "status", "from", "to", "before"]) {
        const v = params.get(k);
        if (v) p[k] = v;
      }
      const t0 = performance.now();
      const res = await api<{ sessions: Session[]; next?: string }>("GET", "/api/v1/sessions" + qs({ ...p, limit: PAGE }));
      const took = performance.now() - t0;
      clear(results);
      results.appendChild(sessionsTable(res.sessions));
      const pager = h("p", { class: "pager" }, `${res.sessions.length} sessions in ${Math.round(took)} ms. `);
      if (params.get("before")) {
        pager.appendChild(h("a", { href: "#/sessions?" + withoutParam(params, "before") }, "Newest"));
        pager.appendChild(document.createTextNode(" "));
      }
      if (res.next) {
        const np = new URLSearchParams(params);
        np.set("before", res.next);
        pager.appendChild(h("a", { href: "#/sessions?" + np.toString(), id: "next-page" }, "Older →"));
      }
      results.appendChild(pager);
    } catch (e) {
      clear(results);
      results.appendChild(errorBox(e));
    }
  };
  load();
  return main;
}

function withoutParam(p: URLSearchParams, k: string): string {
  const n = new URLSearchParams(p);
  n.delete(k);
  return n.toString();
}

export function sessionsTable(list: Session[], opts: { live?: boolean } = {}): HTMLElement {
  if (list.length === 0) return h("p", { class: "empty" }, "No sessions match.");
  const rows = list.map((s) => {
    const started = new Date(s.started_at).getTime();
    const ended = s.ended_at ? new Date(s.ended_at).getTime() : Date.now();
    const integrity = h("span", { class: "badge pending" }, s.status === "active" ? "recording" : "…");
    if (s.status === "ended") verifyQueue.push({ id: s.id, el: integrity });
    const href = opts.live ? `#/live/${encodeURIComponent(s.id)}` : `#/sessions/${encodeURIComponent(s.id)}`;
    return h(
      "tr",
      { "data-session": s.id },
      h("td", { "data-label": "When" }, h("a", { href }, fmtTime(s.started_at))),
      h("td", { "data-label": "Who" }, s.user),
      h("td", { "data-label": "Where" }, `${s.target} (${s.type})`),
      h("td", { "data-label": "How long" }, fmtDuration(ended - started) + (s.status === "active" ? " so far" : "")),
      h("td", { "data-label": "Status" }, s.status === "active" ? h("span", { class: "badge live" }, "active") : s.end_reason || "ended", s.hold ? " · hold" : ""),
      h("td", { "data-label": "Integrity" }, integrity),
    );
  });
  setTimeout(runVerify, 0);
  return h(
    "table",
    { class: "sessions" },
    h("thead", null, h("tr", null, ["When", "Who", "Where", "How long", "Status", "Integrity"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, rows),
  );
}

// Integrity badges of a page are verified a few at a time, in the background.
const verifyQueue: { id: string; el: HTMLElement }[] = [];
let verifying = 0;
function runVerify() {
  while (verifying < 3 && verifyQueue.length) {
    const { id, el } = verifyQueue.shift()!;
    if (!el.isConnected) continue;
    verifying++;
    api<{ intact: boolean; findings: { kind: string }[] | null }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}/verify`)
      .then((v) => setBadge(el, v.intact, v.findings?.[0]?.kind))
      .catch(() => {
        el.textContent = "unknown";
      })
      .finally(() => {
        verifying--;
        runVerify();
      });
  }
}

export function setBadge(el: HTMLElement, intact: boolean, finding?: string) {
  el.className = "badge " + (intact ? "ok" : "bad");
  el.textContent = intact ? "✓ intact" : `✗ ${finding ?? "broken"}`;
  el.title = intact ? "hash chain and signatures verified" : "verification failed: " + (finding ?? "");
}

// ---- router ----

async function route() {
  disposeCurrent?.();
  disposeCurrent = undefined;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = (path || "/sessions").split("/").filter(Boolean).map(decodeURIComponent);
  if (!me.authenticated && parts[0] !== "login") {
    try {
      await loadSession();
    } catch (e) {
      clear(app);
      app.appendChild(errorBox(e));
      return;
    }
    if (!me.authenticated) {
      location.hash = "#/login";
      return;
    }
  }
  clear(app);
  if (parts[0] === "login") {
    if (!me.methods.length) await loadSession().catch(() => {});
    app.appendChild(loginPage(params));
    (document.getElementById("username") as HTMLInputElement | null)?.focus();
    return;
  }
  app.appendChild(nav());
  let view: HTMLElement;
  let dispose: (() => void) | undefined;
  switch (parts[0]) {
    case "sessions":
      if (parts[1]) [view, dispose] = sessionPage(parts[1], params);
      else view = sessionsPage(params);
      break;
    case "live":
      if (parts[1]) [view, dispose] = livePage(parts[1]);
      else [view, dispose] = liveListPage();
      break;
    case "targets":
      view = targetsPage();
      break;
    case "policies":
      view = policiesPage();
      break;
    case "audit":
      view = auditPage(params);
      break;
    case "identity":
      view = identityPage();
      break;
    default:
      view = page("Not found", h("p", null, "No such page."));
  }
  disposeCurrent = dispose;
  app.appendChild(view);
  app.appendChild(h("footer", null, "Airlock: every session recorded, hash-chained and signed."));
}

setOnUnauthorized(() => {
  me = { authenticated: false, methods: me.methods };
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
