// Opens a report page in headless Chromium (Debian's, through playwright-core), and prints one JSON
// object: console errors and page errors, the key elements found, axe-core's accessibility
// violations, and a screenshot written where asked. Used by cli/tests/report.rs.
//
// node check_page.mjs MODULES_DIR PAGE.html SCREENSHOT.png
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [modules, page, screenshot] = process.argv.slice(2);
const require = createRequire(`${path.resolve(modules)}/`);
const { chromium } = require("playwright-core");
const axePath = require.resolve("axe-core/axe.min.js");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const errors = [];
const requests = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const tab = await context.newPage();
  tab.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  tab.on("pageerror", (e) => errors.push(String(e)));
  // A self-contained page loads nothing but itself.
  tab.on("request", (r) => { if (!r.url().startsWith("file:")) requests.push(r.url()); });
  await tab.goto(pathToFileURL(path.resolve(page)).href, { waitUntil: "load" });
  const found = await tab.evaluate(() => ({
    title: document.title,
    h1: document.querySelector("h1")?.textContent ?? null,
    sections: [...document.querySelectorAll("h2")].map((h) => h.id),
    policyRows: document.querySelectorAll("#policies + table tbody tr").length,
    scenarios: document.querySelectorAll("details[id^=scenario-]").length,
    stoppers: [...document.querySelectorAll("details[id^=scenario-] td:last-child code")].length,
    cards: [...document.querySelectorAll(".cards li")].map((li) => li.textContent.trim()),
  }));
  // Open every <details> so axe checks the whole page, hidden parts included.
  await tab.evaluate(() => document.querySelectorAll("details").forEach((d) => { d.open = true; }));
  await tab.addScriptTag({ path: axePath });
  const axe = await tab.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  });
  await tab.evaluate(() => document.querySelectorAll("details").forEach((d) => { d.open = false; }));
  await tab.screenshot({ path: screenshot });
  console.log(JSON.stringify({ errors, requests, found, axe }));
} finally {
  await browser.close();
}
