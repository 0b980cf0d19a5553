// The built console's size, gzipped as a browser downloads it: prints
// {"js_gzip_bytes", "css_gzip_bytes", "files": {...}} for the folder given
// (default dist). tests/api/console.rs holds it to the budget.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";

const root = process.argv[2] ?? "dist";
const files = {};
let js = 0;
let css = 0;
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      walk(path);
      continue;
    }
    const gz = gzipSync(readFileSync(path), { level: 9 }).length;
    files[relative(root, path)] = gz;
    if (name.endsWith(".js")) js += gz;
    if (name.endsWith(".css")) css += gz;
  }
};
walk(root);
console.log(JSON.stringify({ js_gzip_bytes: js, css_gzip_bytes: css, files }));
