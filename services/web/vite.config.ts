import { defineConfig } from "vite";

// Served by the analyzer under /console (services/analyzer/src/http/console.rs);
// `npm run dev` proxies the API to a local `analyzer serve`.
export default defineConfig({
  base: "/console/",
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Scripts come from files only: the server's Content-Security-Policy
    // has no 'unsafe-inline'.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "/v1": "http://127.0.0.1:8000",
      "/openapi.json": "http://127.0.0.1:8000",
    },
  },
});
