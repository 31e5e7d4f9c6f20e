import { api, Ev, Session } from "./api";
import { clear, h } from "./dom";
import { errorBox, me, page, sessionsTable } from "./main";
import { isTerminal, sessionMeta, TERMINAL_OTHERS } from "./session";
import { Timeline } from "./timeline";

export function liveListPage(): [HTMLElement, () => void] {
  const list = h("div", { id: "live-list", "aria-live": "polite" }, "Loading…");
  const main = page("Live sessions", h("p", null, "Sessions in progress, refreshed every 3 seconds. Open one to watch it as it happens."), list);
  const load = async () => {
    try {
      const res = await api<{ sessions: Session[] }>("GET", "/api/v1/sessions?status=active&limit=200");
      clear(list);
      list.appendChild(sessionsTable(res.sessions.filter((s) => s.type !== "audit"), { live: true }));
    } catch (e) {
      clear(list);
      list.appendChild(errorBox(e));
    }
  };
  load();
  const t = window.setInterval(load, 3000);
  return [main, () => clearInterval(t)];
}

export function livePage(id: string): [HTMLElement, () => void] {
  const status = h("p", { id: "live-status", role: "status" }, "Connecting…");
  const body = h("div", { id: "live-body" });
  const main = page("Live session", status, body);
  let es: EventSource | undefined;
  let disposePlayer: (() => void) | undefined;
  (async () => {
    let s: Session;
    try {
      s = (await api<{ session: Session }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}`)).session;
    } catch (e) {
      body.appendChild(errorBox(e));
      return;
    }
    body.appendChild(sessionMeta(s));
    if (me.role === "admin" && s.status === "active") body.appendChild(terminateForm(id, status));
    const tl = new Timeline();
    const others = new Set(TERMINAL_OTHERS.split(","));
    if (isTerminal(s)) {
      // The terminal itself, drawn by the player from the live asciicast stream; the timeline
      // below keeps what a terminal does not show (TERMINAL_OTHERS).
      const { liveTerminal } = await import("./terminal");
      const [screen, dispose] = liveTerminal(id);
      disposePlayer = dispose;
      body.appendChild(screen);
    }
    body.appendChild(tl.el);
    es = new EventSource(`/api/v1/sessions/${encodeURIComponent(id)}/live`);
    es.addEventListener("open", () => (status.textContent = s.status === "active" ? "Watching: new events appear as they are recorded." : "This session has ended; showing its recording."));
    es.addEventListener("event", (m) => {
      const ev = JSON.parse((m as MessageEvent).data) as Ev;
      if (!isTerminal(s) || others.has(ev.type)) tl.add(ev);
      if (ev.type === "session.end") status.textContent = `Session ended: ${ev.data?.reason}${ev.data?.error ? " (" + ev.data.error + ")" : ""}`;
    });
    es.addEventListener("end", (m) => {
      const d = JSON.parse((m as MessageEvent).data);
      status.textContent = `Session ended: ${d.session?.end_reason ?? ""}`;
      status.setAttribute("data-ended", "true");
      document.getElementById("terminate-form")?.remove();
      es?.close();
    });
    es.addEventListener("failure", (m) => {
      body.appendChild(errorBox(JSON.parse((m as MessageEvent).data).error));
      es?.close();
    });
  })();
  return [
    main,
    () => {
      es?.close();
      disposePlayer?.();
    },
  ];
}

function terminateForm(id: string, status: HTMLElement): HTMLElement {
  const reason = h("input", { id: "terminate-reason", name: "reason", required: true, maxlength: "500", placeholder: "The user is told this" });
  const msg = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      id: "terminate-form",
      class: "terminate",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        clear(msg);
        try {
          await api("POST", `/api/v1/sessions/${encodeURIComponent(id)}/terminate`, { reason: reason.value });
          status.textContent = "Ending the session…";
        } catch (x) {
          msg.appendChild(errorBox(x));
        }
      },
    },
    h("label", { for: "terminate-reason" }, "Reason"),
    reason,
    h("button", { type: "submit", class: "danger", id: "terminate" }, "End session"),
    msg,
  );
  return form;
}
