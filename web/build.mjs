// Builds the web UI into ../internal/ui/dist, which the gateway embeds (go:embed). Run by
// `make ui` (npm ci && npm run build). The output is not committed.
import { build } from "esbuild";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = new URL("../internal/ui/dist/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) {
  if (f !== "placeholder.html") rmSync(join(out, f), { recursive: true, force: true });
}
const result = await build({
  metafile: true,
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  // The terminal player (asciinema-player and its WebAssembly) is its own chunk, loaded only
  // by terminal sessions' pages.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: out,
  loader: { ".woff": "dataurl", ".woff2": "dataurl", ".ttf": "dataurl" },
  logLevel: "info",
});
// index.html preloads the chunks app.js imports statically, so that the browser fetches them
// with app.js instead of after running it.
const app = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint === "src/main.ts");
const preload = app[1].imports
  .filter((i) => i.kind === "import-statement")
  .map((i) => `<link rel="modulepreload" href="/${i.path.slice(i.path.indexOf("dist/") + 5)}">`)
  .join("\n");
writeFileSync(join(out, "index.html"), readFileSync("src/index.html", "utf8").replace("<!-- preload -->", preload));
