// A database session as a timeline of statements with their results. Every value is inserted
// as text (see dom.ts).
import { Ev } from "./api";
import { append, Child, fmtDuration, h } from "./dom";

export interface Statement {
  el: HTMLElement;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "string") return v;
  if (typeof v === "object" && v && "hex" in (v as any)) return "\\x" + (v as any).hex;
  return JSON.stringify(v);
}

// clip shows at most max characters of a recorded text, and says how many more the recording
// holds: nothing is left out silently.
function clip(text: string, max: number, cls: string): (HTMLElement | null)[] {
  if (text.length <= max) return [h("pre", { class: cls }, text), null];
  return [h("pre", { class: cls }, text.slice(0, max)), h("p", { class: "clipped" }, `… ${text.length - max} more characters: export the recording for all of it`)];
}

// body is a Kubernetes request's or response's body as recorded (masked), with what its info
// says was left out.
function body(ev: Ev, b: { bytes?: number; truncated?: boolean; masked?: number; withheld?: boolean } | undefined): (HTMLElement | null)[] {
  const text = ev.text ?? (ev.base64 ? `[${b?.bytes ?? "?"} bytes binary]` : "");
  const notes = [
    b?.withheld ? "body withheld (not recorded)" : "",
    b?.truncated ? `recorded body cut at the listener's limit (${b.bytes} bytes in all)` : "",
    b?.masked ? `${b.masked} values masked` : "",
  ].filter(Boolean);
  return [...(text ? clip(text, 4000, "body") : []), notes.length ? h("p", { class: "mask" }, notes.join(" · ")) : null];
}

function secs(ns: number): string {
  return `+${(ns / 1e9).toFixed(3)} s`;
}

// Timeline renders events incrementally: add() takes them in order (the live view feeds it as
// they arrive).
export class Timeline {
  el = h("ol", { class: "timeline" });
  private cur: HTMLElement | undefined; // the statement card being filled
  private cols: string[] = [];
  private table: HTMLTableSectionElement | undefined;
  private revealedTable: HTMLTableSectionElement | undefined;
  private rowsShown = 0;
  private rowsHidden = 0; // past the 500 shown
  statements = 0;

  private card(kind: string, ev: Ev, ...content: Child[]): HTMLElement {
    const li = h("li", { class: "ev " + kind, "data-seq": ev.seq }, h("span", { class: "at" }, secs(ev.offset_ns)), ...content);
    this.el.appendChild(li);
    return li;
  }

  add(ev: Ev) {
    const d = ev.data ?? {};
    switch (ev.type) {
      case "session.start":
        this.card(
          "meta",
          ev,
          h("strong", null, "Session start"),
          ` ${d.user} → ${d.target}${d.database ? "/" + d.database : ""} from ${d.client_addr}`,
          d.application_name ? ` (${d.application_name})` : "",
          d.tls ? ` · TLS ${d.tls_version ?? ""}` : " · no TLS",
          d.policy ? ` · policy ${d.policy}` : "",
        );
        break;
      case "session.end":
        this.cur = undefined;
        this.card(
          "meta",
          ev,
          h("strong", null, "Session end"),
          ` ${d.reason}`,
          d.error ? `: ${d.error}` : "",
          ` · ${d.statements ?? 0} statements · ${fmtDuration((d.duration_ns ?? 0) / 1e6)}`,
        );
        break;
      case "query": {
        this.statements++;
        this.cols = [];
        this.table = undefined;
        this.revealedTable = undefined;
        this.rowsShown = 0;
        this.rowsHidden = 0;
        const params = (d.params ?? []) as { null?: boolean; text?: string; hex?: string }[];
        this.cur = this.card(
          "stmt",
          ev,
          h("pre", { class: "sql" }, d.text ?? ""),
          params.length
            ? h("p", { class: "params" }, "Parameters: ", params.map((p, i) => `$${i + 1}=${p.null ? "NULL" : (p.text ?? "\\x" + (p.hex ?? ""))}`).join(", "))
            : null,
        );
        break;
      }
      case "columns":
        this.cols = ((d.columns ?? []) as { name: string }[]).map((c) => c.name);
        break;
      case "rows": {
        if (!this.cur) this.cur = this.card("stmt", ev);
        if (!this.table) {
          const t = h("table", { class: "rows" }, h("thead", null, h("tr", null, this.cols.map((c) => h("th", { scope: "col" }, c)))), h("tbody"));
          this.cur.appendChild(h("div", { class: "scroll" }, t));
          this.table = t.tBodies[0];
        }
        for (const r of ev.rows ?? []) {
          if (this.rowsShown >= 500) {
            this.rowsHidden++;
            continue;
          }
          this.rowsShown++;
          this.table.appendChild(h("tr", null, r.map((v) => h("td", null, cell(v)))));
        }
        if (ev.rows_error) this.cur.appendChild(h("p", { class: "error" }, "rows: " + ev.rows_error));
        if (ev.revealed_rows) {
          if (!this.revealedTable) {
            const t = h("table", { class: "rows revealed" }, h("caption", null, "Original values (revealed; this read is audited)"), h("thead", null, h("tr", null, this.cols.map((c) => h("th", { scope: "col" }, c)))), h("tbody"));
            this.cur.appendChild(h("div", { class: "scroll" }, t));
            this.revealedTable = t.tBodies[0];
          }
          for (const r of ev.revealed_rows.slice(0, 500)) this.revealedTable.appendChild(h("tr", null, r.map((v) => h("td", null, cell(v)))));
        }
        if (ev.reveal_error) this.cur.appendChild(h("p", { class: "error" }, "reveal: " + ev.reveal_error));
        break;
      }
      case "result":
        if (!this.cur) this.cur = this.card("stmt", ev);
        this.cur.appendChild(
          h("p", { class: "result" }, h("span", { class: "tag" }, d.tag || "done"), ` · ${d.rows ?? 0} rows · ${fmtDuration((d.duration_ns ?? 0) / 1e6)}`, this.rowsHidden ? ` · first 500 rows shown (${this.rowsHidden} more: export the recording for all of them)` : ""),
        );
        break;
      case "error":
      case "notice": {
        const shown = ev.revealed_data ?? d;
        const target = this.cur ?? this.card("meta", ev);
        target.appendChild(
          h(
            "p",
            { class: ev.type === "error" ? "error" : "notice" },
            `${shown.severity ?? ev.type} ${shown.code ?? ""}: ${shown.message ?? ""}`,
            shown.detail ? ` (${shown.detail})` : "",
            shown.source === "gateway" ? " [gateway]" : "",
          ),
        );
        break;
      }
      case "notification": {
        const shown = ev.revealed_data ?? d;
        (this.cur ?? this.card("meta", ev)).appendChild(h("p", { class: "notice" }, `Notification on "${shown.channel ?? ""}" from pid ${shown.pid ?? "?"}: ${shown.payload ?? ""}`));
        break;
      }
      case "guardrail":
        (this.cur ?? this.card("meta", ev, d.statement ? h("pre", { class: "sql" }, d.statement) : null)).appendChild(
          h("p", { class: "guardrail " + (d.action ?? "") }, "Guardrail: ", h("strong", null, d.action ?? "?"), d.rule ? ` by rule ${d.rule}` : "", d.reason ? ` (${d.reason})` : "", d.classes?.length ? ` [${d.classes.join(", ")}]` : ""),
        );
        break;
      case "mask":
        (this.cur ?? this.card("meta", ev)).appendChild(
          h("p", { class: "mask" }, "Masked: ", Object.entries(d.hits ?? {}).map(([k, n]) => `${k} ×${n}`).join(", ")),
        );
        break;
      case "copy.in":
      case "copy.out":
        append(this.cur ?? this.card("meta", ev), clip(ev.revealed_text ?? ev.text ?? (ev.base64 ? `[${d.bytes} bytes binary]` : ""), 4000, "copy"));
        break;
      case "kube.request": {
        this.statements++;
        const what = [d.verb, d.resource && (d.subresource ? `${d.resource}/${d.subresource}` : d.resource), d.namespace && `in ${d.namespace}`, d.name].filter(Boolean).join(" ");
        this.cur = this.card(
          "stmt",
          ev,
          h("pre", { class: "sql" }, `${d.method ?? ""} ${d.path ?? ""}${d.query ? "?" + d.query : ""}`),
          what ? h("p", { class: "params" }, what) : null,
          d.denied ? h("p", { class: "guardrail deny" }, "Denied", d.rule ? ` by rule ${d.rule}` : "") : null,
          d.warning ? h("p", { class: "guardrail warn" }, `Warning: ${d.warning}`) : null,
        );
        append(this.cur, body(ev, d.body));
        break;
      }
      case "kube.response": {
        const target = this.cur ?? this.card("stmt", ev);
        target.appendChild(
          h("p", { class: d.status >= 400 ? "error" : "result" }, h("span", { class: "tag" }, String(d.status ?? "?")), ` · ${fmtDuration((d.duration_ns ?? 0) / 1e6)}`, d.streamed ? " · streamed" : "", d.source === "gateway" ? " [gateway]" : "", d.message ? `: ${d.message}` : ""),
        );
        append(target, body(ev, d.body));
        break;
      }
      case "kube.response.end":
        (this.cur ?? this.card("meta", ev)).appendChild(h("p", { class: d.error ? "error" : "result" }, `Stream ended · ${fmtDuration((d.duration_ns ?? 0) / 1e6)}`, d.events ? ` · ${d.events} watch events` : "", d.error ? `: ${d.error}` : ""));
        break;
      case "kube.watch":
        (this.cur ?? this.card("meta", ev)).appendChild(h("p", { class: "notice" }, `Watch event ${d.type ?? ""} ${d.kind ?? ""} ${[d.namespace, d.name].filter(Boolean).join("/")}`));
        break;
      case "exec.exit":
        this.card("meta", ev, `Channel ${d.channel}: `, d.status !== undefined && d.status !== null ? `exit status ${d.status}` : `killed by signal ${d.signal ?? "?"}`, d.message ? ` (${d.message})` : "");
        break;
      case "file.transfer":
        this.card(
          "meta",
          ev,
          h("strong", null, `${d.tool ?? "sftp"} ${d.op ?? ""}`),
          " ",
          h("code", null, d.path ?? ""),
          d.new_path ? [" → ", h("code", null, d.new_path)] : null,
          d.bytes_read || d.bytes_written ? ` · ${d.bytes_read ?? 0} bytes read, ${d.bytes_written ?? 0} bytes written` : "",
          d.status && d.status !== "ok" ? ` · ${d.status}` : "",
        );
        break;
      case "forward":
        this.card(
          "meta",
          ev,
          h("strong", null, `${d.kind ?? ""} forward`),
          ` to ${d.destination ?? ""}`,
          d.origin ? ` from ${d.origin}` : "",
          d.closed ? ` closed · ${d.bytes_from_client ?? 0} bytes from client, ${d.bytes_to_client ?? 0} to client` : " opened",
          d.error ? `: ${d.error}` : "",
        );
        break;
      case "denied":
        this.card("meta", ev, h("p", { class: "guardrail deny" }, h("strong", null, `Denied ${d.request ?? ""}`), d.detail ? ` ${d.detail}` : "", d.reason ? `: ${d.reason}` : "", d.rule ? ` (rule ${d.rule})` : ""));
        break;
      case "cancel":
        this.card("meta", ev, `Cancel request (${d.delivered ? "delivered" : "not delivered"})`);
        break;
      case "recording.gap":
        this.card("meta error", ev, `Recording gap: ${d.events} events dropped (${d.reason})`);
        break;
      case "audit":
        this.card("meta", ev, h("strong", null, d.action), ` by ${d.actor || "-"} · ${d.outcome}`, d.subject ? ` · ${d.subject}` : "", d.detail ? ` · ${Object.entries(d.detail).map(([k, v]) => `${k}=${v}`).join(" ")}` : "");
        break;
      case "terminal.output":
      case "terminal.input":
      case "exec":
        append(this.card("meta", ev, h("strong", null, ev.type)), clip(ev.revealed_text ?? ev.text ?? d.command ?? d.kind ?? (d.withheld ? `[${d.bytes} bytes typed at a password prompt, sealed]` : ""), 2000, "term"));
        break;
      default:
        // checkpoints, originals and others: not shown
        break;
    }
  }
}
