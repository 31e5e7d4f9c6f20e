// The terminal player: a recorded SSH session's output, at its real size and resizes, played by
// asciinema-player from the session's asciicast export (GET .../export?format=asciicast).
import * as AsciinemaPlayer from "asciinema-player";
import { clear, h } from "./dom";

const IDLE = 2; // seconds: longer pauses are cut to this when skipping idle time

export interface Cast {
  text: string; // asciicast v2
  cols: number;
  rows: number;
  commands: { t: number; label: string }[]; // the cast's markers, in order
  duration: number;
}

// parseCast reads what the player's controls need from an asciicast v2 text: the size, the
// markers (commands) and the duration. The player parses the text itself.
export function parseCast(text: string): Cast {
  const lines = text.split("\n");
  const hdr = JSON.parse(lines[0] || "{}");
  const commands: { t: number; label: string }[] = [];
  let duration = 0;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i];
    if (!l) continue;
    if (l.includes('"m"')) {
      const [t, k, d] = JSON.parse(l);
      if (k === "m") commands.push({ t, label: d });
    }
    const comma = l.indexOf(",");
    if (comma > 1) duration = Math.max(duration, Number(l.slice(1, comma)));
  }
  return { text, cols: hdr.width ?? 80, rows: hdr.height ?? 24, commands, duration };
}

function clock(t: number): string {
  const s = Math.max(0, Math.floor(t));
  const hh = Math.floor(s / 3600),
    mm = Math.floor((s % 3600) / 60),
    ss = s % 60;
  return (hh ? `${hh}:${String(mm).padStart(2, "0")}` : String(mm)) + ":" + String(ss).padStart(2, "0");
}

// TerminalPlayer plays a terminal session's asciicast export with asciinema-player. Its times
// are the player's: with idle time skipped, pauses longer than IDLE seconds count as IDLE.
export class TerminalPlayer {
  el = h("div", { class: "player", id: "player" });
  private screen = h("div", { class: "screen", id: "screen" });
  private player: AsciinemaPlayer.Player | undefined;
  private cast: Cast | undefined;
  private speed = 1;
  private skipIdle = true;
  private timer: number | undefined;
  private timeEl = h("span", { id: "time", class: "time" }, "0:00 / 0:00");
  private seekEl = h("input", { id: "seek", type: "range", min: "0", max: "0", step: "any", value: "0", "aria-label": "Position" }); // any: a step would round the end off
  private playBtn = h("button", { type: "button", id: "play" }, "Play");
  private sizeEl = h("span", { id: "size", class: "size" });
  private isPlaying = false;

  constructor(
    private id: string,
    private autoPlay = false,
  ) {}

  url(): string {
    return `/api/v1/sessions/${encodeURIComponent(this.id)}/export?format=asciicast`;
  }

  async load() {
    const t0 = performance.now();
    const res = await fetch(this.url(), { credentials: "same-origin" });
    if (!res.ok) throw new Error(`export: ${res.status} ${await res.text()}`);
    const text = await res.text();
    const t1 = performance.now();
    this.cast = parseCast(text);
    const t2 = performance.now();
    clear(this.el);
    const speed = h(
      "select",
      { id: "speed", "aria-label": "Speed", onchange: (e: Event) => this.setSpeed(Number((e.target as HTMLSelectElement).value)) },
      [0.5, 1, 2, 4, 8].map((s) => h("option", { value: s, selected: s === 1 }, `${s}×`)),
    );
    const idle = h("input", { type: "checkbox", id: "skip-idle", checked: true, onchange: (e: Event) => this.setSkipIdle((e.target as HTMLInputElement).checked) });
    this.playBtn.addEventListener("click", () => this.toggle());
    this.seekEl.addEventListener("input", () => this.seek(Number(this.seekEl.value)));
    const controls = h(
      "div",
      { class: "controls" },
      this.playBtn,
      h("label", null, "Speed ", speed),
      h("label", null, idle, ` Skip idle time (pauses over ${IDLE} s)`),
      this.seekEl,
      this.timeEl,
      this.sizeEl,
    );
    const cmds = h(
      "ol",
      { class: "commands", id: "commands", "aria-label": "Commands" },
      this.cast.commands.map((c, i) => h("li", null, h("button", { type: "button", class: "link", onclick: () => this.jump(i) }, `${clock(c.t)}  ${c.label}`))),
    );
    this.el.append(
      controls,
      this.screen,
      this.cast.commands.length ? h("details", { open: true }, h("summary", null, `Commands (${this.cast.commands.length})`), cmds) : h("p", null, "No commands recorded."),
    );
    this.sizeEl.textContent = ` ${this.cast.cols}×${this.cast.rows}`;
    this.create(0, this.autoPlay);
    this.el.setAttribute("data-timing", `start ${Math.round(t0)} ms, fetch ${Math.round(t1 - t0)} ms (${Math.round(text.length / 1024)} KiB), parse ${Math.round(t2 - t1)} ms, player ${Math.round(performance.now() - t2)} ms`);
    this.el.setAttribute("data-ready-ms", String(Math.round(performance.now() - t0)));
    this.timer = window.setInterval(() => this.tick(), 200);
  }

  private create(at: number | string, play: boolean) {
    if (!this.cast) return;
    this.player?.dispose();
    clear(this.screen);
    this.player = AsciinemaPlayer.create({ data: this.cast.text, parser: "asciicast" }, this.screen, {
      speed: this.speed,
      idleTimeLimit: this.skipIdle ? IDLE : undefined,
      autoPlay: false,
      preload: true,
      fit: "width",
      controls: true,
      terminalFontSize: "small",
    });
    const p = this.player;
    p.addEventListener("play", () => this.setPlaying(true));
    p.addEventListener("playing", () => this.setPlaying(true));
    p.addEventListener("pause", () => this.setPlaying(false));
    p.addEventListener("ended", () => this.setPlaying(false));
    // The terminal's size follows the recording's resizes (and a seek's reset to a snapshot).
    const core = p as unknown as { addEventListener(name: string, f: (e: any) => void): void };
    core.addEventListener("resize", (e) => this.showSize(e?.cols, e?.rows));
    core.addEventListener("reset", (e) => this.showSize(e?.size?.cols, e?.size?.rows));
    // Seek rather than startAt: a seek positions a paused player at once.
    if (at !== 0) p.seek(typeof at === "number" ? at : (at as `${number}%`)).then(() => play && p.play());
    else if (play) p.play();
  }

  private showSize(cols?: number, rows?: number) {
    if (cols && rows) this.sizeEl.textContent = ` ${cols}×${rows}`;
  }

  private setPlaying(on: boolean) {
    // When it first played, in ms since the page was opened (the browser test reads it).
    if (on && !this.el.hasAttribute("data-playing-ms")) this.el.setAttribute("data-playing-ms", String(Math.round(performance.now())));
    this.isPlaying = on;
    this.playBtn.textContent = on ? "Pause" : "Play";
  }

  toggle() {
    if (!this.player) return;
    if (this.isPlaying) this.player.pause();
    else this.player.play();
  }

  setSpeed(s: number) {
    this.speed = s;
    this.create(this.player?.getCurrentTime() ?? 0, this.isPlaying);
  }

  setSkipIdle(on: boolean) {
    const d = this.player?.getDuration();
    const pct = d ? ((this.player!.getCurrentTime() ?? 0) / d) * 100 : 0;
    this.skipIdle = on;
    this.create(`${pct.toFixed(3)}%`, this.isPlaying);
  }

  async jump(i: number) {
    if (!this.player) return;
    await this.player.seek({ marker: i });
    this.tick();
    this.el.setAttribute("data-seeked", `marker ${i}`);
  }

  async seek(t: number) {
    if (!this.player) return;
    await this.player.seek(t);
    this.tick();
    this.el.setAttribute("data-seeked", String(t));
  }

  private tick() {
    if (!this.player) return;
    const t = this.player.getCurrentTime() ?? 0;
    const d = this.player.getDuration() ?? 0;
    this.timeEl.textContent = `${clock(t)} / ${clock(d)}`;
    this.timeEl.setAttribute("data-seconds", t.toFixed(1));
    this.seekEl.max = String(d);
    if (document.activeElement !== this.seekEl) this.seekEl.value = String(t);
    // The size the player's terminal has now, whichever way it got there (playing through a
    // resize, or a seek back before one): the player keeps it in its terminal's style.
    const term = this.screen.querySelector<HTMLElement>('[style*="--term-cols"]');
    if (term) this.showSize(Number(term.style.getPropertyValue("--term-cols")), Number(term.style.getPropertyValue("--term-rows")));
  }

  download() {
    const a = h("a", { href: this.url(), download: `${this.id}.cast` });
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  dispose() {
    if (this.timer) clearInterval(this.timer);
    this.player?.dispose();
  }
}

// liveTerminal shows a running terminal session as it happens: asciinema-player's eventsource
// driver on GET .../live?format=asciicast, which first draws the screen as it is now, then
// plays each new output and resize as it is recorded. It returns the element and its disposer.
export function liveTerminal(id: string): [HTMLElement, () => void] {
  const screen = h("div", { class: "screen", id: "live-screen" });
  // The player's eventsource driver is in its runtime but not in its type declarations.
  const src = { driver: "eventsource", url: `/api/v1/sessions/${encodeURIComponent(id)}/live?format=asciicast` } as unknown as AsciinemaPlayer.Source;
  const player = AsciinemaPlayer.create(src, screen, {
    autoPlay: true,
    fit: "width",
    controls: false,
  });
  return [screen, () => player.dispose()];
}
