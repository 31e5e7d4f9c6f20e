// A database session as a timeline of statements with their results. Every value is inserted
// as text (see dom.ts).
import { Ev } from "./api";
import { fmtDuration, h } from "./dom";

export interface Statement {
  el: HTMLElement;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "string") return v;
  if (typeof v === "object" && v && "hex" in (v as any)) return "\\x" + (v as any).hex;
  return JSON.stringify(v);
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
  statements = 0;

  private card(kind: string, ev: Ev, ...content: (Node | string | null)[]): HTMLElement {
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
          if (this.rowsShown >= 500) break;
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
          h("p", { class: "result" }, h("span", { class: "tag" }, d.tag || "done"), ` · ${d.rows ?? 0} rows · ${fmtDuration((d.duration_ns ?? 0) / 1e6)}`, this.rowsShown >= 500 ? " · first 500 rows shown" : ""),
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
      case "guardrail":
        (this.cur ?? this.card("meta", ev)).appendChild(
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
        (this.cur ?? this.card("meta", ev)).appendChild(h("pre", { class: "copy" }, (ev.revealed_text ?? ev.text ?? (ev.base64 ? `[${d.bytes} bytes binary]` : "")).slice(0, 4000)));
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
        this.card("meta", ev, h("strong", null, ev.type), " ", h("pre", { class: "term" }, (ev.text ?? d.command ?? "").slice(0, 2000)));
        break;
      default:
        // checkpoints, originals and others: not shown
        break;
    }
  }
}
