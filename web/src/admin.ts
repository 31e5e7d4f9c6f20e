// Targets, policies, the audit log, users.
import { api, Ev, qs, Session } from "./api";
import { clear, fmtTime, h } from "./dom";
import { errorBox, go, me, page } from "./main";

interface Target {
  name: string;
  type: string;
  address: string;
  database?: string;
  username?: string;
  tls?: string;
  ca_file?: string;
  private_key_file?: string;
  host_key?: string;
  token_file?: string;
  client_cert_file?: string;
  client_key_file?: string;
  impersonate?: boolean;
  labels?: Record<string, string>;
  retention_days?: number;
  source?: string;
  created_by?: string;
}

export function targetsPage(): HTMLElement {
  const list = h("div", { id: "targets" }, "Loading…");
  const formBox = h("div");
  const main = page("Targets", list, formBox);
  const admin = me.role === "admin";
  const load = async () => {
    try {
      const res = await api<{ targets: Target[] }>("GET", "/api/v1/targets");
      clear(list);
      if (!res.targets.length) list.appendChild(h("p", { class: "empty" }, "No targets yet."));
      else
        list.appendChild(
          h(
            "table",
            { class: "targets" },
            h("thead", null, h("tr", null, ["Name", "Type", "Address", "Database", "User", "Source", ""].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              null,
              res.targets.map((t) => {
                const result = h("span", { class: "test-result", "aria-live": "polite" });
                return h(
                  "tr",
                  { "data-target": t.name },
                  h("td", { "data-label": "Name" }, t.name),
                  h("td", { "data-label": "Type" }, t.type),
                  h("td", { "data-label": "Address" }, t.address),
                  h("td", { "data-label": "Database" }, t.database ?? ""),
                  h("td", { "data-label": "User" }, t.username ?? ""),
                  h("td", { "data-label": "Source" }, t.source ?? ""),
                  h(
                    "td",
                    null,
                    admin
                      ? [
                          h(
                            "button",
                            {
                              type: "button",
                              class: "test",
                              onclick: async () => {
                                result.textContent = "testing…";
                                try {
                                  const r = await api<{ ok: boolean; error?: string; duration_ms: number }>("POST", `/api/v1/targets/${encodeURIComponent(t.name)}/test`);
                                  result.textContent = r.ok ? ` reachable (${r.duration_ms} ms)` : ` unreachable: ${r.error}`;
                                  result.className = "test-result " + (r.ok ? "ok" : "bad");
                                } catch (e) {
                                  result.textContent = " " + String(e);
                                }
                              },
                            },
                            "Test",
                          ),
                          t.source !== "config" ? h("button", { type: "button", class: "link", onclick: () => showForm(t) }, "Edit") : null,
                          result,
                        ]
                      : null,
                  ),
                );
              }),
            ),
          ),
        );
    } catch (e) {
      clear(list);
      list.appendChild(errorBox(e));
    }
  };
  const showForm = (t?: Target) => {
    clear(formBox);
    // A field shown for the target types it applies to (data-types), hidden for the others.
    const field = (types: string, ...content: (Node | string)[]) => h("div", { class: "field", "data-types": types }, ...content);
    const inp = (name: string, label: string, value = "", attrs: Record<string, string | boolean> = {}, types = "*") =>
      field(types, h("label", { for: "t-" + name }, label), h("input", { id: "t-" + name, name, value, ...attrs }));
    const msg = h("div", { "aria-live": "polite" });
    const typeSel = h(
      "select",
      { id: "t-type", name: "type" },
      [
        ["postgres", "PostgreSQL"],
        ["mysql", "MySQL / MariaDB"],
        ["ssh", "SSH host"],
        ["kubernetes", "Kubernetes cluster"],
      ].map(([v, l]) => h("option", { value: v, selected: (t?.type ?? "postgres") === v }, l)),
    ) as HTMLSelectElement;
    const form: HTMLFormElement = h(
      "form",
      {
        class: "target-form",
        id: "target-form",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          clear(msg);
          const fd = new FormData(form);
          const body: Record<string, unknown> = {};
          // Only the fields of the chosen type are sent.
          for (const el of Array.from(form.querySelectorAll<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>("input, select, textarea"))) {
            const box = el.closest<HTMLElement>("[data-types]");
            if (!el.name || (box && box.hidden)) continue;
            if (el instanceof HTMLInputElement && el.type === "checkbox") body[el.name] = el.checked;
            else if (el.name === "retention_days") body[el.name] = Number(fd.get(el.name) || 0);
            else body[el.name] = String(fd.get(el.name) ?? "");
          }
          if (t && !body.password && !body.token) body.keep_password = true;
          try {
            await api("POST", "/api/v1/targets", body);
            msg.appendChild(h("p", { class: "ok", role: "status" }, `Saved target ${body.name}.`));
            load();
          } catch (x) {
            msg.appendChild(errorBox(x));
          }
        },
      },
      h("h2", null, t ? `Edit ${t.name}` : "Register a target"),
      inp("name", "Name", t?.name ?? "", { required: true, readonly: !!t }),
      field("*", h("label", { for: "t-type" }, "Type"), typeSel),
      inp("address", "Address", t?.address ?? "", { required: true, placeholder: "host:port, or https://API-SERVER:6443 for Kubernetes" }),
      inp("database", "Database", t?.database ?? "", {}, "postgres mysql"),
      inp("username", "Username (the gateway's login on the target)", t?.username ?? "", {}, "postgres mysql ssh"),
      inp("password", "Password (write-only)", "", { type: "password", autocomplete: "new-password", placeholder: t ? "unchanged" : "" }, "postgres mysql ssh"),
      field(
        "postgres mysql",
        h("label", { for: "t-tls" }, "TLS"),
        h("select", { id: "t-tls", name: "tls" }, ["", "disable", "prefer", "require", "verify-ca", "verify-full"].map((v) => h("option", { value: v, selected: (t?.tls ?? "") === v }, v || "default"))),
      ),
      inp("private_key_file", "Private key file (on the gateway's host)", t?.private_key_file ?? "", { placeholder: "/etc/airlock/web-1.key" }, "ssh"),
      inp("host_key", "Host key (pinned)", t?.host_key ?? "", { placeholder: "ssh-ed25519 AAAA...", spellcheck: "false" }, "ssh"),
      inp("ca_file", "CA file (on the gateway's host)", t?.ca_file ?? "", {}, "postgres mysql kubernetes"),
      inp("token", "Bearer token (write-only)", "", { type: "password", autocomplete: "new-password", placeholder: t ? "unchanged" : "" }, "kubernetes"),
      inp("token_file", "Token file (on the gateway's host)", t?.token_file ?? "", {}, "kubernetes"),
      field(
        "kubernetes",
        h("label", { for: "t-impersonate" }, "Impersonate the user"),
        h("input", { id: "t-impersonate", name: "impersonate", type: "checkbox", checked: !!t?.impersonate }),
      ),
      inp("retention_days", "Retention (days, 0 = forever)", String(t?.retention_days ?? 0), { type: "number", min: "0" }),
      h("div", { class: "field" }, h("button", { type: "submit", id: "save-target" }, "Save")),
      msg,
    );
    const showTypeFields = () => {
      for (const box of Array.from(form.querySelectorAll<HTMLElement>("[data-types]"))) {
        const types = box.dataset.types ?? "*";
        box.hidden = types !== "*" && !types.split(" ").includes(typeSel.value);
      }
    };
    typeSel.addEventListener("change", showTypeFields);
    showTypeFields();
    formBox.appendChild(form);
    (form.querySelector("input:not([readonly])") as HTMLInputElement | null)?.focus();
  };
  if (admin) main.insertBefore(h("p", null, h("button", { type: "button", id: "new-target", onclick: () => showForm() }, "Register a target")), list);
  load();
  return main;
}

export function policiesPage(): HTMLElement {
  const editor = h("textarea", { id: "policies-json", rows: "18", spellcheck: "false", "aria-label": "API-managed policies (JSON)" });
  const fixed = h("div", { id: "config-policies" });
  const msg = h("div", { "aria-live": "polite" });
  const save = h(
    "button",
    {
      type: "button",
      id: "save-policies",
      onclick: async () => {
        clear(msg);
        let policies: unknown;
        try {
          policies = JSON.parse(editor.value);
        } catch (e) {
          msg.appendChild(errorBox("not valid JSON: " + e));
          return;
        }
        try {
          await api("PUT", "/api/v1/policies", { policies });
          msg.appendChild(h("p", { class: "ok", role: "status" }, "Saved."));
          load();
        } catch (e) {
          msg.appendChild(errorBox(e));
        }
      },
    },
    "Validate and save",
  );
  const exUser = h("input", { id: "explain-user", name: "user", required: true });
  const exTarget = h("input", { id: "explain-target", name: "target", required: true });
  const exOut = h("pre", { id: "explain-out", class: "explain" });
  const explain = h(
    "form",
    {
      class: "explain-form",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        exOut.textContent = "…";
        try {
          const r = await api<{ text: string }>("GET", "/api/v1/policies/explain" + qs({ user: exUser.value, target: exTarget.value }));
          exOut.textContent = r.text;
        } catch (x) {
          exOut.textContent = String(x);
        }
      },
    },
    h("h2", null, "Explain"),
    h("div", { class: "field" }, h("label", { for: "explain-user" }, "User"), exUser),
    h("div", { class: "field" }, h("label", { for: "explain-target" }, "Target"), exTarget),
    h("div", { class: "field" }, h("button", { type: "submit", id: "explain" }, "Explain")),
    exOut,
  );
  const load = async () => {
    try {
      const r = await api<{ policies: any[] }>("GET", "/api/v1/policies");
      const cfg = r.policies.filter((p) => p.source === "config");
      const own = r.policies.filter((p) => p.source !== "config").map(({ source, ...p }) => p);
      clear(fixed);
      fixed.appendChild(h("h2", null, `From the config file (${cfg.length}, read-only)`));
      fixed.appendChild(h("pre", { class: "policies" }, JSON.stringify(cfg, null, 2)));
      editor.value = JSON.stringify(own, null, 2);
    } catch (e) {
      clear(fixed);
      fixed.appendChild(errorBox(e));
    }
  };
  load();
  const admin = me.role === "admin";
  if (!admin) editor.setAttribute("readonly", "");
  return page(
    "Policies",
    fixed,
    h("h2", null, "Managed through the API (evaluated after the config file's)"),
    editor,
    admin ? h("p", null, save) : h("p", null, "Only admins may change policies."),
    msg,
    explain,
  );
}

export function auditPage(params: URLSearchParams): HTMLElement {
  const box = h("div", { id: "audit" }, "Loading…");
  const main = page("Audit log", h("p", null, "What was done to the gateway and its recordings: sign-ins, target and policy changes, reads and reveals of recordings, terminations. Each gateway run keeps its own hash-chained log."), box);
  (async () => {
    try {
      const runs = await api<{ sessions: Session[] }>("GET", "/api/v1/sessions" + qs({ type: "audit", limit: 20 }));
      clear(box);
      if (!runs.sessions.length) {
        box.appendChild(h("p", { class: "empty" }, "No audit log yet."));
        return;
      }
      const pick = params.get("run") ?? runs.sessions[0].id;
      box.appendChild(
        h(
          "p",
          null,
          "Gateway run: ",
          runs.sessions.map((s) => (s.id === pick ? h("strong", null, fmtTime(s.started_at) + " ") : h("a", { href: "#/audit?run=" + encodeURIComponent(s.id) }, fmtTime(s.started_at) + " "))),
        ),
      );
      const res = await api<{ events: Ev[] }>("GET", `/api/v1/sessions/${encodeURIComponent(pick)}/events`);
      const rows = res.events
        .filter((e) => e.type === "audit")
        .reverse()
        .map((e) =>
          h(
            "tr",
            null,
            h("td", { "data-label": "When" }, fmtTime(e.time)),
            h("td", { "data-label": "Action" }, e.data.action),
            h("td", { "data-label": "Actor" }, e.data.actor ?? ""),
            h("td", { "data-label": "Outcome", class: "outcome-" + e.data.outcome }, e.data.outcome),
            h("td", { "data-label": "Subject" }, e.data.subject ? h("a", { href: "#/sessions/" + encodeURIComponent(e.data.subject) }, e.data.subject) : ""),
            h("td", { "data-label": "Detail" }, Object.entries(e.data.detail ?? {}).map(([k, v]) => `${k}=${v}`).join(" ")),
          ),
        );
      box.appendChild(
        h(
          "table",
          { class: "audit" },
          h("thead", null, h("tr", null, ["When", "Action", "Actor", "Outcome", "Subject", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", null, rows),
        ),
      );
    } catch (e) {
      clear(box);
      box.appendChild(errorBox(e));
    }
  })();
  return main;
}

export function identityPage(): HTMLElement {
  const box = h("div", { id: "identity" }, "Loading…");
  const table = (id: string, cols: string[], rows: HTMLElement[]) =>
    h("table", { class: "audit", id }, h("thead", null, h("tr", null, cols.map((c) => h("th", { scope: "col" }, c)))), h("tbody", null, rows));
  const td = (label: string, ...content: (Node | string | null)[]) => h("td", { "data-label": label }, ...content);
  const load = async () => {
    try {
      const w = await api<{ user: string; role: string; groups: string[]; method: string; provider?: string; expires_at: string }>("GET", "/api/v1/whoami");
      clear(box);
      box.append(
        h("h2", null, "You"),
        h("dl", { class: "meta" }, h("dt", null, "User"), h("dd", null, w.user), h("dt", null, "Role"), h("dd", null, w.role), h("dt", null, "Groups"), h("dd", null, w.groups.join(", ") || "none"), h("dt", null, "Signed in by"), h("dd", { id: "signed-in-by" }, w.provider ? `${w.method} (identity provider ${w.provider})` : w.method), h("dt", null, "Until"), h("dd", null, fmtTime(w.expires_at))),
      );
      if (me.role !== "admin") {
        box.append(h("p", null, "Local users come from the config file (users:) and the bootstrap admin from the first start."));
        return;
      }
      const [us, sa] = await Promise.all([
        api<{ users: { name: string; role: string; groups: string[]; ssh_keys: string[] }[] }>("GET", "/api/v1/users"),
        api<{ service_accounts: any[] }>("GET", "/api/v1/service-accounts"),
      ]);
      box.append(
        h("h2", null, `Local users (${us.users.length})`),
        h("p", null, "From the config file (users:) and the bootstrap admin. Users of an identity provider sign in with it and are not kept here."),
        table(
          "local-users",
          ["Name", "Role", "Groups", "SSH keys"],
          us.users.map((u) =>
            h("tr", null, td("Name", u.name), td("Role", u.role), td("Groups", u.groups.join(", ") || "none"), td("SSH keys", u.ssh_keys.length ? h("code", null, u.ssh_keys.join("\n")) : "none")),
          ),
        ),
      );
      // Service accounts and their API keys: the key is shown once, here, when it is made.
      const msg = h("div", { "aria-live": "polite", id: "sa-message" });
      const form: HTMLFormElement = h(
        "form",
        {
          class: "target-form",
          id: "sa-form",
          onsubmit: async (e: Event) => {
            e.preventDefault();
            clear(msg);
            const fd = new FormData(form);
            const list = (k: string) =>
              String(fd.get(k) ?? "")
                .split(",")
                .map((x) => x.trim())
                .filter(Boolean);
            const body: Record<string, unknown> = { name: String(fd.get("name") ?? ""), role: String(fd.get("role") ?? "user"), groups: list("groups"), targets: list("targets") };
            if (fd.get("expires_in")) body.expires_in = String(fd.get("expires_in"));
            try {
              const res = await api<{ api_key: string }>("POST", "/api/v1/service-accounts", body);
              await load();
              const m = document.getElementById("sa-message");
              m?.append(
                h("p", { class: "ok", role: "status" }, `Created ${body.name}. Its API key is shown only now: copy it.`),
                h("pre", { id: "sa-key" }, res.api_key),
              );
            } catch (x) {
              msg.appendChild(errorBox(x));
            }
          },
        },
        h("h3", null, "Create a service account"),
        h("div", { class: "field" }, h("label", { for: "sa-name" }, "Name"), h("input", { id: "sa-name", name: "name", required: true })),
        h(
          "div",
          { class: "field" },
          h("label", { for: "sa-role" }, "Role"),
          h("select", { id: "sa-role", name: "role" }, ["user", "auditor", "admin"].map((r) => h("option", { value: r }, r))),
        ),
        h("div", { class: "field" }, h("label", { for: "sa-groups" }, "Groups (comma-separated)"), h("input", { id: "sa-groups", name: "groups" })),
        h("div", { class: "field" }, h("label", { for: "sa-targets" }, "Targets (comma-separated; empty: any)"), h("input", { id: "sa-targets", name: "targets" })),
        h("div", { class: "field" }, h("label", { for: "sa-expires" }, "Expires in (e.g. 720h; empty: never)"), h("input", { id: "sa-expires", name: "expires_in" })),
        h("div", { class: "field" }, h("button", { type: "submit", id: "sa-create" }, "Create")),
      );
      box.append(
        h("h2", null, `Service accounts (${sa.service_accounts.length})`),
        sa.service_accounts.length
          ? table(
              "service-accounts",
              ["Name", "Role", "Key", "Targets", "Created", "Expires", "State", ""],
              sa.service_accounts.map((a) =>
                h(
                  "tr",
                  null,
                  td("Name", a.name),
                  td("Role", a.role),
                  td("Key", a.key_id ?? ""),
                  td("Targets", (a.targets ?? []).join(", ") || "any"),
                  td("Created", `${fmtTime(a.created_at)} by ${a.created_by ?? ""}`),
                  td("Expires", a.expires_at ? fmtTime(a.expires_at) : "never"),
                  td("State", a.revoked_at ? `revoked by ${a.revoked_by ?? ""}` : a.active === false ? "expired" : "active"),
                  td(
                    "",
                    a.revoked_at
                      ? null
                      : h(
                          "button",
                          {
                            type: "button",
                            class: "link",
                            "data-revoke": a.name,
                            onclick: async () => {
                              if (!confirm(`Revoke ${a.name}? Its key stops working at once.`)) return;
                              try {
                                await api("POST", `/api/v1/service-accounts/${encodeURIComponent(a.name)}/revoke`, {});
                                await load();
                              } catch (x) {
                                box.appendChild(errorBox(x));
                              }
                            },
                          },
                          "Revoke",
                        ),
                  ),
                ),
              ),
            )
          : h("p", { class: "empty" }, "None yet."),
        form,
        msg,
      );
    } catch (e) {
      clear(box);
      box.appendChild(errorBox(e));
    }
  };
  load();
  return page("Users", box, h("p", null, h("button", { type: "button", class: "link", onclick: () => go("#/sessions") }, "Back to sessions")));
}
