import { defineConfig } from "@playwright/test";

// Driven by tests/api/console.rs, which starts the real server and passes
// its address and credentials in the environment. The browser is Debian's
// Chromium (no browser download): CHROMIUM, or /usr/bin/chromium.
export default defineConfig({
  testDir: "e2e",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: process.env.E2E_OUTPUT ?? "test-results",
  use: {
    baseURL: process.env.CONSOLE_URL ?? "http://127.0.0.1:8000",
    acceptDownloads: true,
    trace: "off",
    screenshot: "only-on-failure",
    viewport: { width: 1280, height: 800 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
