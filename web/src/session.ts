import { api, Ev, Session } from "./api";
import { clear, fmtDuration, fmtTime, h } from "./dom";
import { canReadAll, errorBox, me, page, setBadge } from "./main";
import { Timeline } from "./timeline";
import type { TerminalPlayer } from "./terminal";

// The events of a terminal session shown beside its player.
export const TERMINAL_OTHERS = "session.start,session.end,exec,exec.exit,file.transfer,forward,denied,guardrail,recording.gap";

export function isTerminal(s: Session): boolean {
  return s.type === "ssh";
}

export function sessionMeta(s: Session): HTMLElement {
  const end = s.ended_at ? new Date(s.ended_at).getTime() : Date.now();
  return h(
    "dl",
    { class: "meta" },
    h("dt", null, "Who"),
    h("dd", null, s.user),
    h("dt", null, "Where"),
    h("dd", null, `${s.target} (${s.type})`),
    h("dt", null, "From"),
    h("dd", null, s.client_addr),
    h("dt", null, "When"),
    h("dd", null, fmtTime(s.started_at)),
    h("dt", null, "How long"),
    h("dd", null, fmtDuration(end - new Date(s.started_at).getTime())),
    h("dt", null, "Status"),
    h("dd", { id: "status" }, s.status === "active" ? "active" : `ended: ${s.end_reason}`, s.hold ? " · legal hold" : ""),
  );
}

export function sessionPage(id: string, params: URLSearchParams): [HTMLElement, () => void] {
  const body = h("div", { id: "session-body" }, "Loading…");
  const main = page("Session", body);
  let player: TerminalPlayer | undefined;
  // The player's code loads while the session is fetched (most pages never need it).
  const playerModule = import("./terminal");
  playerModule.catch(() => {});
  const load = async () => {
    let s: Session;
    try {
      s = (await api<{ session: Session }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}`)).session;
    } catch (e) {
      clear(body);
      body.appendChild(errorBox(e));
      return;
    }
    clear(body);
    const badge = h("span", { class: "badge pending", id: "integrity" }, s.status === "active" ? "recording" : "verifying…");
    const verify = () =>
      api<{ intact: boolean; events: number; checkpoints: number; findings: { kind: string; message: string }[] | null }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}/verify`)
        .then((v) => {
          setBadge(badge, v.intact, v.findings?.[0]?.kind);
          badge.title += ` · ${v.events} events, ${v.checkpoints} signed checkpoints`;
        })
        .catch((e) => {
          badge.textContent = "verification failed: " + e;
        });
    // A terminal recording verifies after the player has loaded: both read the whole recording.
    if (s.status === "ended" && !isTerminal(s)) verify();
    const exportLink = h("a", { class: "button", href: `/api/v1/sessions/${encodeURIComponent(id)}/export`, download: `${id}.jsonl`, id: "export-jsonl" }, "Export JSON Lines");
    const actions = h("p", { class: "actions" }, "Integrity: ", badge, " ", exportLink);
    body.appendChild(sessionMeta(s));
    body.appendChild(actions);
    if (s.status === "active") body.appendChild(h("p", null, h("a", { href: `#/live/${encodeURIComponent(id)}` }, "Watch live →")));
    const content = h("section", { id: "content", "aria-label": "Recording" }, "Loading recording…");
    body.appendChild(content);
    if (isTerminal(s)) {
      const { TerminalPlayer } = await playerModule;
      player = new TerminalPlayer(id, params.get("play") === "1");
      actions.appendChild(document.createTextNode(" "));
      actions.appendChild(h("button", { type: "button", id: "export-cast", onclick: () => player?.download() }, "Export asciicast"));
      clear(content);
      content.appendChild(player.el);
      player
        .load()
        .catch((e) => content.appendChild(errorBox(e)))
        .finally(() => s.status === "ended" && verify());
      // What the player does not show: programs and their exits, file transfers, forwards,
      // refusals, recording gaps.
      const others = h("section", { id: "session-events", "aria-label": "Other events" }, h("h2", null, "Events"), "Loading…");
      body.appendChild(others);
      api<{ events: Ev[]; error?: string }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}/events?types=${TERMINAL_OTHERS}`)
        .then((res) => {
          const tl = new Timeline();
          for (const ev of res.events) tl.add(ev);
          others.lastChild?.remove();
          others.appendChild(tl.el);
          if (res.error) others.appendChild(errorBox(res.error));
        })
        .catch((e) => {
          others.lastChild?.remove();
          others.appendChild(errorBox(e));
        });
      return;
    }
    const reveal = params.get("reveal") === "true";
    if (canReadAll()) {
      actions.appendChild(document.createTextNode(" "));
      if (reveal) actions.appendChild(h("a", { class: "button", href: `#/sessions/${encodeURIComponent(id)}` }, "Hide originals"));
      else
        actions.appendChild(
          h("a", { class: "button warn", id: "reveal", href: `#/sessions/${encodeURIComponent(id)}?reveal=true`, title: "Shows the unmasked values; your read is recorded in the audit log" }, "Reveal originals (audited)"),
        );
    }
    try {
      const res = await api<{ events: Ev[]; error?: string }>("GET", `/api/v1/sessions/${encodeURIComponent(id)}/events${reveal ? "?reveal=true" : ""}`);
      const tl = new Timeline();
      for (const ev of res.events) tl.add(ev);
      clear(content);
      content.appendChild(h("h2", null, `${tl.statements} statements`, reveal ? ` · originals revealed to ${me.user} (audited)` : ""));
      content.appendChild(tl.el);
      if (res.error) content.appendChild(errorBox(res.error));
    } catch (e) {
      clear(content);
      content.appendChild(errorBox(e));
    }
  };
  load();
  return [main, () => player?.dispose()];
}
