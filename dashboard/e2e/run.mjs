// End-to-end test of the dashboard in real headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core) against a real gateway:
// `tollgate dev` (control plane serving this dashboard's build, data plane,
// SQLite) and the `tollgate-mock` OpenAI-compatible upstream.
//
// Signs in as the seeded demo owner, adds a provider pointing at the mock,
// adds a model, creates a caller key (read from the page), calls the data
// plane with that key, and finds the call on the usage page. Then a user of
// another tenant signs in and sees none of it, in the UI and through the API.
// The operator creates a tenant and runs a new operator's whole journey in
// it without the CLI (top up, provider, model, price, key, call, usage and
// request log, key regenerate, revoke); the demo owner sets a guardrail and
// a cache policy that calls from this script then meet; the operator updates
// a tier and resolves an incident.
//
// Needs: `npm run build` done, binaries in $TOLLGATE_BIN_DIR (default
// ../target/debug). Exits non-zero on the first failed check.
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const bin = process.env.TOLLGATE_BIN_DIR ?? path.join(root, "target/debug");
const browserPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artifacts = path.join(here, "artifacts");
const T = 20_000;

const procs = [];
const tmp = mkdtempSync(path.join(tmpdir(), "tollgate-dash-e2e-"));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`  ok: ${what}`);
}

/** Starts a process and resolves with its stdout once `ready(stdout)` matches. */
function start(cmd, args, ready, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    procs.push(p);
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready in ${T} ms:\n${out}\n${err}`)), T * 3);
    p.stdout.on("data", (d) => {
      out += d;
      const m = ready(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => reject(new Error(`${cmd} exited with ${code}:\n${out}\n${err}`)));
  });
}

function run(cmd, args) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: tmp }, (error, stdout, stderr) =>
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function eventually(what, fn, timeout = T) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out: ${what}${last ? ` (${last})` : ""}`);
}

/** "$1,234.500000" → 1234500000n (what the dashboard shows, read back exactly). */
function micros(text) {
  const m = /^(-)?\$([\d,]+)\.(\d{6})$/.exec(text.trim());
  if (!m) throw new Error(`not a dollar amount: ${text}`);
  const v = BigInt(m[2].replace(/,/g, "")) * 1_000_000n + BigInt(m[3]);
  return m[1] ? -v : v;
}

function usdText(v) {
  const abs = v < 0n ? -v : v;
  return `${v < 0n ? "-" : ""}$${(abs / 1_000_000n).toLocaleString("en-US")}.${(abs % 1_000_000n).toString().padStart(6, "0")}`;
}

/**
 * Screenshots of a page at laptop and phone widths, under e2e/artifacts/
 * (not committed), to look at: layout breakage shows there first.
 */
async function shoot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  const before = page.viewportSize();
  for (const [label, size] of [["laptop", { width: 1366, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: path.join(artifacts, `${name}-${label}.png`), fullPage: true });
  }
  if (before) await page.setViewportSize(before);
}

/** A chat completion through the data plane: status, JSON body and headers. */
async function chat(proxy, key, body, headers = {}) {
  const r = await fetch(`${proxy}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json(), headers: r.headers };
}

/**
 * A new operator's whole setup-to-first-call journey in the browser, no CLI,
 * for the tenant just created in the UI (selected in `op`): the operator
 * tops it up, adds a provider (the mock), a model with its route, a price and
 * the tenant's owner; the owner signs in, creates a key; a call; the owner
 * sees it on the usage page and in the request log, regenerates the key (old
 * secret 401, new one 200) and revokes it (401).
 */
async function newTenantJourney(browser, op, { dash, proxy, mockUrl, upstreamKey }, consoleErrors) {
  const tenant = await op.getByLabel("Tenant", { exact: true }).inputValue();
  check(tenant === "third", "the journey runs in the tenant created in the UI");
  await op.getByRole("link", { name: "Balance & ledger" }).click();
  const topup = op.getByRole("form", { name: "Add to the balance" });
  await topup.getByLabel("Amount (USD)").fill("10");
  await topup.getByLabel(/Reference/).fill("inv-third-1");
  await topup.getByRole("button", { name: "Add entry" }).click();
  await op.getByRole("status").filter({ hasText: "Added $10.000000 (topup); balance $10.000000." }).waitFor();
  check(true, "new tenant: topped up to $10 in the UI");

  await op.getByRole("link", { name: "Providers" }).click();
  await op.getByText("No providers yet.").waitFor();
  const pform = op.getByRole("form", { name: "Add a provider" });
  await pform.getByLabel("Name", { exact: true }).fill("third-upstream");
  await pform.getByLabel("Kind", { exact: true }).selectOption("openai");
  await pform.getByLabel("Base URL", { exact: true }).fill(mockUrl);
  await pform.getByLabel(/API key/).fill(upstreamKey);
  await pform.getByRole("button", { name: "Add provider" }).click();
  await op.getByRole("status").filter({ hasText: "Provider third-upstream added." }).waitFor();
  const prow = op.getByRole("row").filter({ hasText: "third-upstream" });
  await prow.getByRole("button", { name: "Test third-upstream" }).click();
  await prow.getByText(/^Works: 200/).waitFor();
  check(true, "new tenant: a provider pointing at the mock is added and its test call works");

  await op.getByRole("link", { name: "Models & routes" }).click();
  const mform = op.getByRole("form", { name: "Add a model" });
  await mform.getByLabel("Public name", { exact: true }).fill("third-model");
  await mform.getByLabel("Provider", { exact: true }).selectOption("third-upstream");
  await mform.getByLabel(/Upstream model/).fill("gpt-4o-mini");
  await mform.getByRole("button", { name: "Add model" }).click();
  await op.getByRole("status").filter({ hasText: "Model third-model added" }).waitFor();
  await op.getByRole("button", { name: "Route of third-model" }).click();
  const target = op.getByRole("region", { name: "Route of third-model" }).getByRole("row").filter({ hasText: "third-upstream" });
  await target.waitFor();
  check((await target.innerText()).includes("gpt-4o-mini"), "the route's target is the provider's gpt-4o-mini");
  check(true, "new tenant: a model is added and its route targets the provider");

  await op.getByRole("link", { name: "Prices" }).click();
  const prform = op.getByRole("form", { name: "Set a price" });
  await prform.getByLabel("Model", { exact: true }).selectOption("third-model");
  await prform.getByLabel("Input (USD per million tokens)").fill("1");
  await prform.getByLabel("Output (USD per million tokens)").fill("2");
  await prform.getByRole("button", { name: "Save price" }).click();
  await op.getByRole("status").filter({ hasText: "Price of third-model saved." }).waitFor();
  check(true, "new tenant: the model is priced");

  // The tenant's first user: an owner, password generated and shown once.
  await op.getByRole("link", { name: "Users" }).click();
  const uform = op.getByRole("form", { name: "Add a user" });
  await uform.getByLabel("Email", { exact: true }).fill("ann@third.test");
  await uform.getByLabel("Role", { exact: true }).selectOption("owner");
  await uform.getByRole("button", { name: "Add user" }).click();
  await op.getByRole("status").filter({ hasText: "User ann@third.test added as owner." }).waitFor();
  const password = (await op.getByRole("region", { name: "New user's password" }).locator("code").innerText()).trim();
  check(password.length >= 12, "new tenant: the operator adds its owner; the password is shown once");

  // From here on the tenant's owner, signed in with that password.
  const owner = await (await browser.newContext()).newPage();
  owner.setDefaultTimeout(T);
  owner.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  owner.on("pageerror", (e) => consoleErrors.push(String(e)));
  await owner.goto(dash);
  await owner.getByLabel("Email", { exact: true }).fill("ann@third.test");
  await owner.getByLabel("Password", { exact: true }).fill(password);
  await owner.getByRole("button", { name: "Sign in" }).click();
  await owner.getByText("Signed in as ann@third.test (owner)").waitFor();
  check(micros(await owner.getByTestId("overview-balance").innerText()) === 10_000_000n, "new tenant: its owner signs in and sees the $10 balance on the overview");
  op = owner;

  await op.getByRole("link", { name: "Caller keys" }).click();
  const kform = op.getByRole("form", { name: "Create a caller key" });
  await kform.getByLabel("Name", { exact: true }).fill("third-key");
  await kform.getByRole("button", { name: "Create key" }).click();
  const key = (await op.getByTestId("new-key").innerText()).trim();
  check(key.startsWith("tg-"), "new tenant: the new key is shown once");
  await op.getByRole("button", { name: "I have copied it" }).click();

  const body = { model: "third-model", messages: [{ role: "user", content: "first call of tenant third" }] };
  const first = await eventually("the data plane serves third-model with the new key", async () => {
    const r = await chat(proxy, key, body);
    return r.status === 200 ? r : null;
  });
  check(first.json.choices?.length === 1, "new tenant: the first call through the data plane succeeds");

  await op.getByRole("link", { name: "Usage" }).click();
  const urow = await eventually("the call appears on the usage page", async () => {
    await op.getByRole("button", { name: "Refresh" }).click();
    const r = op.getByRole("table", { name: /Usage by model/ }).getByRole("row").filter({ hasText: "third-model" });
    return (await r.count()) === 1 ? r : null;
  });
  const ucells = await urow.getByRole("cell").allInnerTexts();
  check(ucells[1] === "1" && micros(ucells[8]) > 0n, `new tenant: usage shows the call and its cost (${ucells.join(" | ")})`);
  const logRow = op.getByRole("table", { name: /Requests \(metadata only/ }).getByRole("row").filter({ hasText: "third-key" });
  await logRow.waitFor();
  check((await logRow.innerText()).includes("200") && (await logRow.innerText()).includes("third-model"), "new tenant: the request log lists the call (200, key, model)");

  // Regenerate: a confirmation dialog, the new secret once; the old one is refused.
  await op.getByRole("link", { name: "Caller keys" }).click();
  const krow = op.getByRole("table", { name: /Caller keys of third/ }).getByRole("row").filter({ hasText: "third-key" });
  const oldPrefix = (await krow.getByRole("cell").nth(1).innerText()).trim();
  check(oldPrefix === `${key.slice(0, 7)}…`, "the key is listed by its prefix");
  await krow.getByRole("button", { name: "Regenerate third-key" }).click();
  const dialog = op.getByRole("alertdialog", { name: "Regenerate key third-key?" });
  await dialog.waitFor();
  check((await dialog.innerText()).includes("stops working within a second"), "regenerate asks first, saying the old secret stops working");
  await shoot(op, "keys-regenerate-dialog");
  await dialog.getByRole("button", { name: "Regenerate third-key now" }).click();
  const fresh = (await op.getByTestId("new-key").innerText()).trim();
  check(fresh.startsWith("tg-") && fresh !== key, "the regenerated secret is shown once");
  await op.getByRole("region", { name: "New caller key" }).getByText("regenerated: its old secret no longer works").waitFor();
  await krow.getByRole("cell").filter({ hasText: `${fresh.slice(0, 7)}…` }).waitFor();
  check(true, "the key's row shows the new prefix");
  await shoot(op, "keys-regenerated");
  const refusedOld = await eventually("the data plane refuses the old secret", async () => {
    const r = await chat(proxy, key, body);
    return r.status === 401 ? r : null;
  });
  check(refusedOld.json.error?.code === "invalid_api_key", "the old secret is refused with 401 invalid_api_key");
  const second = await chat(proxy, fresh, body);
  check(second.status === 200, `the new secret works (${second.status})`);
  await op.getByRole("button", { name: "I have copied it" }).click();
  check(!(await op.content()).includes(fresh), "the new secret is gone from the page once dismissed");

  // Both calls count for the same key.
  await op.getByRole("link", { name: "Usage" }).click();
  await eventually("both calls appear in the request log", async () => {
    await op.getByRole("button", { name: "Refresh" }).click();
    return (await op.getByRole("table", { name: /Requests \(metadata only/ }).getByRole("row").filter({ hasText: "third-key" }).count()) === 2;
  });
  check(true, "the request log lists both calls under the same key");
  const both = await eventually("usage counts both calls", async () => {
    const c = await op.getByRole("table", { name: /Usage by model/ }).getByRole("row").filter({ hasText: "third-model" }).getByRole("cell").allInnerTexts();
    if (c[1] === "2") return c;
    await op.getByRole("button", { name: "Refresh" }).click();
    return null;
  });
  const spent = micros(both[8]);

  // Revoke (asked twice): refused.
  await op.getByRole("link", { name: "Caller keys" }).click();
  await op.getByRole("button", { name: "Revoke third-key" }).click();
  await op.getByRole("button", { name: "Really revoke third-key" }).click();
  await op.getByRole("status").filter({ hasText: "Key third-key revoked." }).waitFor();
  await eventually("the data plane refuses the revoked key", async () => (await chat(proxy, fresh, body)).status === 401);
  check(true, "new tenant: the revoked key is refused (401)");
  await op.getByRole("link", { name: "Balance & ledger" }).click();
  await eventually("the balance shows the two calls", async () => micros(await op.getByTestId("balance").innerText()) === 10_000_000n - spent);
  check(spent > 0n, `new tenant: the two calls (${usdText(spent)}) are taken from the $10 balance`);
}

/**
 * The demo owner sets a guardrail on the guardrails page and a cache policy
 * on the cache page; calls with the demo key (from this script, not the
 * browser) show both at work.
 */
async function guardrailAndCache(page, { proxy, demoKey }) {
  await page.getByRole("link", { name: "Guardrails" }).click();
  const gform = page.getByRole("form", { name: "Create a guardrail" });
  await gform.getByLabel("Name", { exact: true }).fill("e2e-no-secrets");
  await gform.getByLabel("Kind", { exact: true }).selectOption("keyword");
  await gform.getByLabel("Settings (JSON)").fill('{"words": ["secret project"');
  await gform.getByRole("button", { name: "Create guardrail" }).click();
  await gform.locator(".field-error").first().waitFor();
  check(true, "broken guardrail settings are explained before sending");
  await gform.getByLabel("Settings (JSON)").fill('{"words": ["secret project"], "case_sensitive": false, "whole_word": true}');
  await gform.getByRole("button", { name: "Create guardrail" }).click();
  await page.getByRole("status").filter({ hasText: "Guardrail e2e-no-secrets created." }).waitFor();
  const attach = page.getByRole("group", { name: "Attach e2e-no-secrets" });
  await attach.getByLabel("Attach e2e-no-secrets to").selectOption("key");
  await attach.getByLabel("Key for e2e-no-secrets").selectOption({ label: "demo" });
  await attach.getByRole("button", { name: "Attach" }).click();
  await page.getByRole("status").filter({ hasText: "e2e-no-secrets attached." }).waitFor();
  await page.getByRole("row").filter({ hasText: "e2e-no-secrets" }).getByText("key demo").waitFor();
  await shoot(page, "guardrails");
  const secret = { model: "mock-small", messages: [{ role: "user", content: "Tell me about the Secret Project." }] };
  const blocked = await eventually("the data plane applies the guardrail", async () => {
    const r = await chat(proxy, demoKey, secret);
    return r.status === 400 ? r : null;
  });
  check(blocked.json.error?.code === "content_policy_violation", `a call naming the keyword is blocked: 400 ${blocked.json.error?.code}`);
  const clean = await chat(proxy, demoKey, { model: "mock-small", messages: [{ role: "user", content: "Tell me about the weather." }] });
  check(clean.status === 200, "a call without it still goes through");

  await page.getByRole("link", { name: "Cache" }).click();
  const cform = page.getByRole("form", { name: "Set a cache policy" });
  await cform.getByLabel("Applies to", { exact: true }).selectOption("key");
  await cform.getByLabel("Key", { exact: true }).selectOption({ label: "demo" });
  await cform.getByLabel(/TTL/).fill("300");
  await cform.getByRole("button", { name: "Save policy" }).click();
  await page.getByRole("status").filter({ hasText: "Cache policy saved" }).waitFor();
  await page.getByRole("row").filter({ hasText: "key demo" }).getByText("300 s").waitFor();
  await shoot(page, "cache");
  // Calls are bypassed until the data plane has the policy; the first one
  // under it is a miss (stored), the identical next one a hit.
  const same = { model: "mock-small", temperature: 0, messages: [{ role: "user", content: `cache me ${Date.now()}` }] };
  const miss = await eventually("the data plane applies the cache policy", async () => {
    const r = await chat(proxy, demoKey, same);
    return r.status === 200 && r.headers.get("x-tollgate-cache") !== "bypass" ? r : null;
  });
  check(miss.headers.get("x-tollgate-cache") === "miss", `the first call under the policy is a miss (${miss.headers.get("x-tollgate-cache")})`);
  const hit = await chat(proxy, demoKey, same);
  check(hit.status === 200 && hit.headers.get("x-tollgate-cache") === "hit", `the second identical call is a hit (${hit.headers.get("x-tollgate-cache")})`);
  check(JSON.stringify(hit.json.choices) === JSON.stringify(miss.json.choices), "the hit answers what the miss answered");
}

/** The operator updates a tier (effective limits follow) and resolves an incident. */
async function tierAndIncident(op, { dash }) {
  await op.getByRole("link", { name: "Rate limits" }).click();
  const tform = op.getByRole("form", { name: "Set a tier" });
  await tform.getByLabel("Tier name", { exact: true }).fill("e2e-tier");
  await tform.getByLabel("Requests / minute", { exact: true }).fill("1000");
  await tform.getByRole("button", { name: "Save tier" }).click();
  await op.getByRole("status").filter({ hasText: "Tier e2e-tier saved." }).waitFor();
  const lform = op.getByRole("form", { name: "Set rate limits" });
  await lform.getByLabel("Applies to", { exact: true }).selectOption("tenant");
  await lform.getByLabel("Tier", { exact: true }).selectOption("e2e-tier");
  await lform.getByRole("button", { name: "Save limits" }).click();
  await op.getByRole("status").filter({ hasText: "Rate limits saved" }).waitFor();
  const limits = op.getByRole("table", { name: /Rate limits of third/ });
  const tenantRow = limits.getByRole("row").filter({ hasText: "whole tenant" });
  await tenantRow.getByRole("cell").nth(3).filter({ hasText: "1,000" }).waitFor();
  check((await tenantRow.getByRole("cell").nth(1).innerText()) === "e2e-tier", "the tenant takes its limits from tier e2e-tier (RPM 1,000)");
  // Update the tier: the tenant's effective limit follows.
  await tform.getByLabel("Tier name", { exact: true }).fill("e2e-tier");
  await tform.getByLabel("Requests / minute", { exact: true }).fill("2500");
  await tform.getByRole("button", { name: "Save tier" }).click();
  await op.getByRole("status").filter({ hasText: "Tier e2e-tier saved." }).waitFor();
  const tierRow = op.getByRole("table", { name: "Tiers (named sets of limits)" }).getByRole("row").filter({ hasText: "e2e-tier" });
  await tierRow.getByRole("cell").nth(2).filter({ hasText: "2,500" }).waitFor();
  await tenantRow.getByRole("cell").nth(3).filter({ hasText: "2,500" }).waitFor();
  check(true, "an updated tier shows its new RPM, and so does the tenant that uses it");
  await shoot(op, "limits-tier");

  await op.getByRole("link", { name: "Incidents" }).click();
  const upd = op.getByRole("form", { name: "Update E2E degraded answers" });
  await upd.getByLabel("State", { exact: true }).selectOption("resolved");
  await upd.getByLabel("New message (empty: keep)").fill("Fixed by the e2e test.");
  await upd.getByRole("button", { name: "Update" }).click();
  await op.getByRole("status").filter({ hasText: "E2E degraded answers resolved." }).waitFor();
  const card = op.getByRole("region", { name: "E2E degraded answers" });
  await card.getByText(/resolved .*/).first().waitFor();
  check((await upd.count()) === 0 && (await card.innerText()).includes("Fixed by the e2e test."), "the resolved incident has no update form and shows its last message");
  await shoot(op, "incidents-resolved");
  const status = await eventually("the public status page shows the incident resolved", async () => {
    const html = await (await fetch(new URL("/status", dash))).text();
    const i = html.indexOf("E2E degraded answers");
    return i >= 0 && /resolved \d/.test(html.slice(i, i + 400)) ? html : null;
  });
  check(status.includes("Fixed by the e2e test."), "the public status page shows the incident resolved, with its message");
}

async function main() {
  const upstreamKey = "sk-e2e-upstream-key-0000abcd";
  const mockUrl = await start(
    path.join(bin, "tollgate-mock"),
    // Each answer takes 600 ms, so a route policy's total timeout can cut it.
    ["--listen", "127.0.0.1:0", "--api-key", upstreamKey, "--latency-ms", "600"],
    (out) => out.match(/tollgate-mock ready: (\S+)/)?.[1],
  );
  const dataDir = path.join(tmp, "data");
  const dev = await start(
    path.join(bin, "tollgate"),
    ["--data-dir", dataDir, "dev", "--admin-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0",
      "--dashboard-dir", path.join(root, "dashboard/dist")],
    (out) => {
      const dash = out.match(/Dashboard\s+(http\S+)/)?.[1];
      const proxy = out.match(/Proxy \(OpenAI API\)\s+(\S+)/)?.[1];
      const signIn = out.match(/Dashboard sign-in\s+(\S+) \/ (\S+)/);
      const demoKey = out.match(/Demo key\s+(\S+)/)?.[1];
      return dash && proxy && signIn && demoKey ? { dash, proxy, email: signIn[1], password: signIn[2], demoKey } : null;
    },
    { cwd: tmp },
  );
  console.log(`gateway: dashboard ${dev.dash}, proxy ${dev.proxy}, mock ${mockUrl}`);

  const browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ["--no-sandbox"] });
  try {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(T);
    const consoleErrors = [];
    page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    // Static serving: the SPA fallback serves the app on a deep link.
    await page.goto(dev.dash + "providers");
    await page.getByLabel("Email", { exact: true }).fill(dev.email);
    await page.getByLabel("Password", { exact: true }).fill("wrong-password-123");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "wrong email or password" }).waitFor();
    check(true, "a wrong password is refused with the API's message");
    await page.getByLabel("Password", { exact: true }).fill(dev.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText(`Signed in as ${dev.email} (owner)`).waitFor();
    check(true, "the seeded demo owner signs in");

    // Add a provider pointing at the mock upstream.
    await page.getByRole("link", { name: "Providers" }).click();
    const form = page.getByRole("form", { name: "Add a provider" });
    await form.getByLabel("Name", { exact: true }).fill("e2e-upstream");
    await form.getByLabel("Kind", { exact: true }).selectOption("openai");
    await form.getByLabel("Base URL", { exact: true }).fill(mockUrl);
    await form.getByLabel(/API key/).fill(upstreamKey);
    await form.getByRole("button", { name: "Add provider" }).click();
    await page.getByRole("status").filter({ hasText: "Provider e2e-upstream added." }).waitFor();
    const row = page.getByRole("row").filter({ hasText: "e2e-upstream" });
    await row.waitFor();
    const rowText = await row.innerText();
    check(rowText.includes("abcd") && !rowText.includes(upstreamKey), "the provider shows the key's last 4, never the key");
    await row.getByRole("button", { name: "Test e2e-upstream" }).click();
    await row.getByText(/^Works: 200: the provider accepted the key/).waitFor();
    check(!(await row.innerText()).includes(upstreamKey), "the connection test reaches the mock with the stored key (200)");
    await shoot(page, "providers");

    // Add a model served by it.
    await page.getByRole("link", { name: "Models & routes" }).click();
    const mform = page.getByRole("form", { name: "Add a model" });
    await mform.getByLabel("Public name", { exact: true }).fill("e2e-model");
    await mform.getByLabel("Provider", { exact: true }).selectOption("e2e-upstream");
    await mform.getByLabel(/Upstream model/).fill("gpt-4o-mini");
    await mform.getByRole("button", { name: "Add model" }).click();
    await page.getByRole("status").filter({ hasText: "Model e2e-model added" }).waitFor();
    check(true, "a model is added");

    // The operator (operator token) prices the model for demo: USD per million tokens.
    const opToken = readFileSync(path.join(dataDir, "admin.token"), "utf8").trim();
    const pageOp = await (await browser.newContext()).newPage();
    pageOp.setDefaultTimeout(T);
    pageOp.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
    pageOp.on("pageerror", (e) => consoleErrors.push(String(e)));
    await pageOp.goto(dev.dash);
    await pageOp.getByText("Operator token", { exact: true }).click();
    await pageOp.getByLabel(/Operator token \(/).fill(opToken);
    await pageOp.getByRole("button", { name: "Use token" }).click();
    await pageOp.getByText("Signed in as operator token").waitFor();
    await pageOp.getByLabel("Tenant", { exact: true }).selectOption("demo");
    await pageOp.getByRole("link", { name: "Prices" }).click();
    const prform = pageOp.getByRole("form", { name: "Set a price" });
    await prform.getByLabel("Model", { exact: true }).selectOption("e2e-model");
    await prform.getByLabel("Input (USD per million tokens)").fill("1.5x");
    await prform.getByRole("button", { name: "Save price" }).click();
    await prform.getByText(/Enter a price in USD per million tokens, like 25 or 0.50/).waitFor();
    check(true, "a bad price is explained next to the field");
    await prform.getByLabel("Input (USD per million tokens)").fill("1.50");
    await prform.getByLabel("Output (USD per million tokens)").fill("2.25");
    await prform.getByLabel(/Max output tokens/).fill("64");
    await prform.getByRole("button", { name: "Save price" }).click();
    await pageOp.getByRole("status").filter({ hasText: "Price of e2e-model saved." }).waitFor();
    const prow = pageOp.getByRole("table", { name: /Prices of demo/ }).getByRole("row").filter({ hasText: "e2e-model" });
    const prowText = await prow.innerText();
    check(prowText.includes("$1.50") && prowText.includes("$2.25") && prowText.includes("every target") && prowText.includes("64"),
      `the price is listed as money per million tokens (${prowText.replace(/\s+/g, " ")})`);
    await shoot(pageOp, "prices");
    // The operator posts an incident; the public status page shows it.
    await pageOp.getByRole("link", { name: "Incidents" }).click();
    const iform = pageOp.getByRole("form", { name: "Post an incident" });
    await iform.getByLabel("Title", { exact: true }).fill("E2E degraded answers");
    await iform.getByLabel("Components (comma-separated, e.g. openai, gpt-4o)").fill("e2e-model");
    await iform.getByRole("button", { name: "Post incident" }).click();
    await pageOp.getByRole("form", { name: "Update E2E degraded answers" }).waitFor();
    await eventually("the public status page shows the incident", async () => {
      const r = await fetch(new URL("/status", dev.dash));
      return r.status === 200 && (await r.text()).includes("E2E degraded answers") ? true : null;
    });
    check(true, "an incident posted in the UI is on the public status page");
    await shoot(pageOp, "incidents");
    // The tenant's owner reads the price but cannot change it.
    await page.getByRole("link", { name: "Prices" }).click();
    await page.getByRole("table", { name: /Prices of demo/ }).getByRole("row").filter({ hasText: "$2.25" }).waitFor();
    check((await page.getByRole("form", { name: "Set a price" }).count()) === 0, "a tenant owner sees the price and gets no price form");

    // Create a caller key; it is shown once.
    await page.getByRole("link", { name: "Caller keys" }).click();
    const kform = page.getByRole("form", { name: "Create a caller key" });
    await kform.getByLabel("Name", { exact: true }).fill("e2e-key");
    await kform.getByLabel(/^Budget \(USD/).fill("5");
    await kform.getByLabel("Budget period", { exact: true }).selectOption("month");
    await kform.getByRole("button", { name: "Create key" }).click();
    const key = (await page.getByTestId("new-key").innerText()).trim();
    check(key.startsWith("tg-"), "the new key is shown once on the page");
    const krow = page.getByRole("table", { name: /Caller keys of demo/ }).getByRole("row").filter({ hasText: "e2e-key" });
    await krow.getByText("$5.000000/month").waitFor();
    check(true, "the key's own budget, set in the create flow, shows in its row");

    // Call through the data plane with that key (once it has the config).
    const body = JSON.stringify({ model: "e2e-model", messages: [{ role: "user", content: "hello from e2e" }] });
    const answer = await eventually("the data plane serves e2e-model with the new key", async () => {
      const r = await fetch(`${dev.proxy}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body,
      });
      return r.status === 200 ? r.json() : null;
    });
    check(answer.choices?.length === 1, "the call through the data plane succeeds");
    const tokens = answer.usage.prompt_tokens + answer.usage.completion_tokens;

    // The call shows on the usage page: in the chart, the table and the request log.
    await page.getByRole("link", { name: "Usage" }).click();
    const usageRow = await eventually("the call appears on the usage page", async () => {
      await page.getByRole("button", { name: "Refresh" }).click();
      const r = page.getByRole("table", { name: /Usage by model/ }).getByRole("row").filter({ hasText: "e2e-model" });
      return (await r.count()) === 1 ? r : null;
    });
    const cells = await usageRow.getByRole("cell").allInnerTexts();
    const n = (t) => Number(t.replace(/,/g, ""));
    check(cells[1] === "1", "usage counts one call for e2e-model");
    check(cells.slice(3, 8).reduce((a, t) => a + n(t), 0) === tokens, "usage shows the call's tokens by bucket");
    check(/^\$\d+\.\d{6}$/.test(cells[8]), `usage shows the call's cost (${cells[8]})`);
    const cost = micros(cells[8]);
    // At $1.50 / $2.25 per million tokens the call costs 1.5 µ$ per input and 2.25 µ$ per output token (rounded up).
    const expected = (BigInt(answer.usage.prompt_tokens) * 1_500_000n + BigInt(answer.usage.completion_tokens) * 2_250_000n + 999_999n) / 1_000_000n;
    check(cost > 0n && cost <= expected + 1n && cost >= expected - 1n, `the priced call costs ${cells[8]} (expected about ${usdText(expected)})`);
    await page.getByLabel("Chart", { exact: true }).selectOption("calls");
    check(page.url().includes("metric=calls"), "the chart choice is in the URL (bookmarkable)");
    const todayLabel = new Date().toISOString().slice(5, 10);
    const bar = page.getByRole("table", { name: /Calls per day/ }).getByRole("row").filter({ hasText: todayLabel });
    check((await bar.locator("td").allTextContents()).join("|") === "1|0", "the calls chart has today's call (1 succeeded, 0 failed)");
    const svgBars = page.getByTestId("bar");
    check((await svgBars.count()) === 7, "the chart draws one bar per day of the window");
    check((await svgBars.last().locator("rect").count()) === 1, "today's bar is drawn");
    const log = page.getByRole("table", { name: /Requests \(metadata only/ });
    const rec = log.getByRole("row").filter({ hasText: "e2e-model" });
    await rec.waitFor();
    check((await rec.count()) === 1 && (await rec.innerText()).includes("200") && (await rec.innerText()).includes("e2e-key"), "the request log lists the call with status 200 and its key's name");
    const csvHref = await page.getByRole("link", { name: /Export CSV \(1 rows\)/ }).getAttribute("href");
    const csv = decodeURIComponent(csvHref.split(",").slice(1).join(","));
    check(csv.startsWith("started_at_ms,request_id,api,model") && csv.includes(",e2e-model,"), "the request log exports as CSV");
    await shoot(page, "usage");
    // At phone width the navigation folds behind the Menu button.
    await page.setViewportSize({ width: 390, height: 844 });
    check(!(await page.getByRole("link", { name: "Budgets" }).isVisible()), "on a phone the navigation is folded");
    await page.getByRole("button", { name: "Menu" }).click();
    await page.getByRole("link", { name: "Budgets" }).waitFor({ state: "visible" });
    await page.screenshot({ path: path.join(artifacts, "menu-phone.png") });
    await page.getByRole("link", { name: "Usage" }).click();
    check(!(await page.getByRole("link", { name: "Budgets" }).isVisible()), "the Menu opens the navigation and a choice folds it again");
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.getByLabel("Failed calls only").check();
    await page.getByText("No requests match.").waitFor();
    check(page.url().includes("errors=1"), "the request log filters failed calls (and the filter is in the URL)");
    await page.reload();
    await page.getByText("No requests match.").waitFor();
    check(await page.getByLabel("Failed calls only").isChecked(), "a bookmarked filtered view opens with its filter");
    await page.getByLabel("Failed calls only").uncheck();
    await rec.waitFor();

    // A budget for the tenant, set in the UI.
    await page.getByRole("link", { name: "Budgets" }).click();
    const bform = page.getByRole("form", { name: "Set a budget" });
    await bform.getByLabel(/Hard limit/).fill("ten");
    await bform.getByRole("button", { name: "Save budget" }).click();
    await bform.getByText(/Enter an amount in dollars/).waitFor();
    check(true, "a bad budget amount is explained next to the field");
    await bform.getByLabel(/Hard limit/).fill("10");
    await bform.getByLabel(/Alert threshold/).fill("8");
    await bform.getByRole("button", { name: "Save budget" }).click();
    await page.getByRole("status").filter({ hasText: "Budget of tenant set: $10.000000 per month, alert at $8.000000." }).waitFor();
    const brow = page.getByRole("table", { name: /Budgets of demo/ }).getByRole("row").filter({ hasText: /^tenant/ });
    check((await brow.innerText()).includes("$10.000000"), "the month budget is listed with its hard limit");
    const kbrow = page.getByRole("table", { name: /Budgets of demo/ }).getByRole("row").filter({ hasText: "key e2e-key" });
    const kbText = await kbrow.innerText();
    check(kbText.includes("$5.000000") && kbText.includes(usdText(cost)), `the key's budget is listed with the key's name and what the key spent (${kbText.replace(/\s+/g, " ")})`);
    await shoot(page, "budgets");

    // A rate limit on the seeded demo key, set in the UI (a bad number explained first).
    await page.getByRole("link", { name: "Rate limits" }).click();
    const lform = page.getByRole("form", { name: "Set rate limits" });
    await lform.getByLabel("Applies to", { exact: true }).selectOption("key");
    await lform.getByLabel("Key", { exact: true }).selectOption({ label: "demo" });
    await lform.getByLabel("Requests / minute", { exact: true }).fill("-5");
    await lform.getByRole("button", { name: "Save limits" }).click();
    await lform.getByText("Must not be negative.").waitFor();
    check(true, "a bad rate limit is explained next to the field");
    await lform.getByLabel("Requests / minute", { exact: true }).fill("120");
    await lform.getByRole("button", { name: "Save limits" }).click();
    await page.getByRole("status").filter({ hasText: "Rate limits saved" }).waitFor();
    const lrow = page.getByRole("table", { name: /Rate limits of demo/ }).getByRole("row").filter({ hasText: "key demo" });
    // The notice shows before the list reloads: wait for the row itself.
    await lrow.waitFor();
    const lcells = await lrow.getByRole("cell").allInnerTexts();
    check(lcells[0] === "key demo" && lcells[3] === "120", `the demo key's RPM limit is listed (${lcells.join(" | ")})`);
    const statusLink = page.getByRole("link", { name: /Status page/ });
    check((await statusLink.getAttribute("href")) === "/status", "the navigation links to the public status page");
    const statusPage = await fetch(new URL("/status", dev.dash));
    check(statusPage.status === 200 && (await statusPage.text()).includes("<html"), "the control plane serves the public status page without a sign-in");
    await shoot(page, "limits");

    // The overview counts it too.
    await page.getByRole("link", { name: "Overview" }).click();
    const today = page.getByRole("region", { name: "Today (UTC)" });
    await today.waitFor();
    const facts = await today.locator("dd").allInnerTexts();
    check(facts[1] === "1" && facts[2] === "0.0%" && facts[3] === String(tokens), `the overview shows today's call, error rate and tokens (${facts.join(" | ")})`);
    // `tollgate dev` seeds demo with a starting credit.
    const startBalance = micros(await page.getByTestId("overview-balance").innerText());
    check(startBalance === 10_000_000n - cost, `the overview shows the balance after the priced call (${usdText(startBalance)})`);
    await shoot(page, "overview");

    // Change the route's policy in the UI and see the data plane enforce it:
    // a 200 ms total timeout cuts the mock's 600 ms answers.
    await page.getByRole("link", { name: "Models & routes" }).click();
    await page.getByRole("button", { name: "Route of e2e-model" }).click();
    const pform = page.getByRole("form", { name: "Policy of e2e-model" });
    await pform.getByLabel(/Total timeout/).fill("200");
    await pform.getByRole("button", { name: "Save policy" }).click();
    await page.getByRole("status").filter({ hasText: "Policy of e2e-model saved" }).waitFor();
    const cut = await eventually("the data plane applies the 200 ms timeout", async () => {
      const started = Date.now();
      const r = await fetch(`${dev.proxy}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body,
      });
      const elapsed = Date.now() - started;
      return r.status !== 200 ? { status: r.status, elapsed, err: await r.json() } : null;
    });
    check(cut.status === 504 && cut.elapsed < 590 && typeof cut.err.error?.message === "string",
      `the saved policy is enforced: ${cut.status} after ${cut.elapsed} ms (${cut.err.error?.message})`);

    // Revoke the key in the UI (asked twice) and see the data plane refuse it.
    await page.getByRole("link", { name: "Caller keys" }).click();
    await page.getByRole("button", { name: "Revoke e2e-key" }).click();
    await shoot(page, "keys-confirm");
    await page.getByRole("button", { name: "Really revoke e2e-key" }).click();
    await page.getByRole("status").filter({ hasText: "Key e2e-key revoked." }).waitFor();
    const refused = await eventually("the data plane refuses the revoked key", async () => {
      const r = await fetch(`${dev.proxy}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body,
      });
      return r.status === 401 ? r.json() : null;
    });
    check(refused.error?.code === "invalid_api_key", "the revoked key is refused with 401 invalid_api_key");

    // Expected failures (the wrong password) log nothing else; the app runs
    // under the CP's Content-Security-Policy without violations.

    // Another tenant's owner sees none of it.
    const pwFile = path.join(tmp, "b.password");
    writeFileSync(pwFile, "tenant-b-password-123\n", { mode: 0o600 });
    const cli = (args) => run(path.join(bin, "tollgate"), ["--data-dir", dataDir, ...args]);
    check((await cli(["tenant", "create", "other"])).code === 0, "operator creates tenant other");
    const made = await cli(["user", "create", "--tenant", "other", "--email", "b@other.test", "--role", "owner", "--password-file", pwFile]);
    check(made.code === 0, "operator creates an owner of tenant other");
    const ctxB = await browser.newContext();
    const pageB = await ctxB.newPage();
    pageB.setDefaultTimeout(T);
    await pageB.goto(dev.dash);
    await pageB.getByLabel("Email", { exact: true }).fill("b@other.test");
    await pageB.getByLabel("Password", { exact: true }).fill("tenant-b-password-123");
    await pageB.getByRole("button", { name: "Sign in" }).click();
    await pageB.getByText("Signed in as b@other.test (owner)").waitFor();
    await pageB.getByRole("link", { name: "Providers" }).click();
    await pageB.getByText("No providers yet.").waitFor();
    check(!(await pageB.content()).includes("e2e-upstream"), "tenant other's UI does not show demo's provider");
    check((await pageB.getByRole("combobox", { name: "Tenant" }).count()) === 0, "a tenant user gets no tenant picker");
    const tokenB = await pageB.evaluate(() => sessionStorage.getItem("tollgate.session"));
    const viaApi = await cli(["--token", tokenB, "provider", "list", "--tenant", "demo"]);
    check(viaApi.code !== 0 && viaApi.stderr.includes("tenant 'demo' not found"), "tenant other's session gets NotFound for demo through the API");
    const own = await cli(["--token", tokenB, "provider", "list", "--tenant", "other"]);
    check(own.code === 0, "tenant other's session lists its own providers");

    // The operator signs in with the operator token: every tenant, the data
    // planes, and creating a tenant.
    await pageOp.getByRole("link", { name: "Data planes" }).click();
    const node = pageOp.getByRole("row").filter({ hasText: "dev-dp" });
    await node.waitFor();
    check((await node.getByRole("cell").nth(1).innerText()) === "yes" && (await node.getByRole("cell").nth(2).innerText()) === "shared",
      "the operator sees the connected data plane in group shared");
    // A data-plane group scoped to demo, and a registration token: shown once, then listed by its last 4.
    await pageOp.getByLabel("Tenant", { exact: true }).selectOption("demo");
    const dform = pageOp.getByRole("form", { name: "Create a data-plane group" });
    await dform.getByLabel("Group name", { exact: true }).fill("demo-onprem");
    await dform.getByLabel("Receives", { exact: true }).selectOption("tenant");
    await dform.getByRole("button", { name: "Create group" }).click();
    await pageOp.getByRole("status").filter({ hasText: "Group demo-onprem created (tenant demo only)." }).waitFor();
    const tkform = pageOp.getByRole("form", { name: "Create a token for demo-onprem" });
    await tkform.getByLabel("Token name", { exact: true }).fill("rack-1");
    await tkform.getByRole("button", { name: "Create token" }).click();
    const dpToken = (await pageOp.getByTestId("new-dp-token").innerText()).trim();
    check(dpToken.length > 20, "the registration token is shown once");
    await shoot(pageOp, "data-planes-operator");
    await pageOp.getByRole("button", { name: "I have copied it" }).click();
    const tokRow = pageOp.getByRole("table", { name: "Tokens of demo-onprem" }).getByRole("row").filter({ hasText: "rack-1" });
    await tokRow.waitFor();
    check((await tokRow.innerText()).includes(`…${dpToken.slice(-4)}`) && !(await pageOp.content()).includes(dpToken),
      "the token is listed by its last 4 and the page no longer holds it");
    // Demo's owner sees its group and the token (last 4), and another tenant's owner sees neither.
    await page.getByRole("link", { name: "Data planes" }).click();
    await page.getByRole("button", { name: "Tokens of demo-onprem" }).click();
    const ownerTok = page.getByRole("table", { name: "Tokens of demo-onprem" }).getByRole("row").filter({ hasText: "rack-1" });
    await ownerTok.waitFor();
    check((await ownerTok.innerText()).includes(`…${dpToken.slice(-4)}`) && (await page.getByText("tenant demo only").count()) === 1,
      "demo's owner sees its tenant-scoped group and the token by its last 4");
    await shoot(page, "data-planes-tenant");
    await pageB.getByRole("link", { name: "Data planes" }).click();
    await pageB.getByText("No data-plane group for other").waitFor();
    check(!(await pageB.content()).includes("demo-onprem"), "another tenant's owner does not see demo's group");

    // Top up demo's balance as the operator and see it, in the account and the statement.
    await pageOp.getByLabel("Tenant", { exact: true }).selectOption("demo");
    await pageOp.getByRole("link", { name: "Balance & ledger" }).click();
    const topup = pageOp.getByRole("form", { name: "Add to the balance" });
    await topup.getByLabel("Amount (USD)").fill("25.50");
    await topup.getByLabel(/Reference/).fill("inv-e2e-1");
    await topup.getByRole("button", { name: "Add entry" }).click();
    const afterTopUp = startBalance + 25_500_000n;
    await pageOp.getByRole("status").filter({ hasText: `Added $25.500000 (topup); balance ${usdText(afterTopUp)}.` }).waitFor();
    await eventually("the balance shows the top-up", async () => (await pageOp.getByTestId("balance").innerText()) === usdText(afterTopUp));
    const stmt = pageOp.getByRole("table", { name: /Ledger of demo/ }).getByRole("row").filter({ hasText: "inv-e2e-1" });
    await stmt.waitFor();
    check((await stmt.innerText()).includes("$25.500000"), "the operator tops up demo and sees the balance and the statement line");
    await shoot(pageOp, "billing-operator");

    // Redemption codes: generated once by the operator, redeemed by demo's owner.
    await pageOp.getByRole("link", { name: "Redemption codes" }).click();
    const gform = pageOp.getByRole("form", { name: "Generate redemption codes" });
    await gform.getByLabel(/Number of codes/).fill("2");
    await gform.getByLabel(/Value of each/).fill("4");
    await gform.getByRole("button", { name: "Generate codes" }).click();
    // allInnerTexts() does not wait: wait until both codes are on the page.
    await pageOp.getByTestId("new-codes").locator("code").nth(1).waitFor();
    const codes = (await pageOp.getByTestId("new-codes").locator("code").allInnerTexts()).map((c) => c.trim());
    check(codes.length === 2 && codes.every((c) => c.startsWith("tgc_")), "the operator sees the two new codes once");
    await shoot(pageOp, "codes");
    await page.getByRole("link", { name: "Balance & ledger" }).click();
    check((await page.getByRole("form", { name: "Add to the balance" }).count()) === 0, "a tenant owner gets no top-up form");
    const redeem = page.getByRole("form", { name: "Redeem a code" });
    await redeem.getByLabel("Code").fill(codes[0]);
    await redeem.getByRole("button", { name: "Redeem" }).click();
    await page.getByRole("status").filter({ hasText: `Code redeemed: $4.000000 added; balance ${usdText(afterTopUp + 4_000_000n)}.` }).waitFor();
    await redeem.getByLabel("Code").fill(codes[0]);
    await redeem.getByRole("button", { name: "Redeem" }).click();
    await page.getByRole("alert").filter({ hasText: "this code is not valid" }).waitFor();
    check((await page.getByTestId("balance").innerText()) === usdText(afterTopUp + 4_000_000n), "the owner redeems a code once; the balance shows it");
    await pageOp.reload();
    const batchRow = pageOp.getByRole("table", { name: /Batches/ }).getByRole("row").filter({ hasText: "$4.000000" });
    await batchRow.waitFor();
    const batchCells = await batchRow.getByRole("cell").allInnerTexts();
    check(batchCells[2] === "2" && batchCells[3] === "1" && !(await pageOp.content()).includes(codes[1]),
      "the batch list counts the redeemed code and shows no code");
    await shoot(page, "billing-tenant");

    await pageOp.getByRole("link", { name: "Tenants" }).click();
    await pageOp.getByRole("row").filter({ hasText: "other" }).waitFor();
    const tform = pageOp.getByRole("form", { name: "Create a tenant" });
    await tform.getByLabel(/Name/).fill("Bad Name");
    await tform.getByRole("button", { name: "Create tenant" }).click();
    await pageOp.getByRole("alert").filter({ hasText: "invalid tenant name" }).waitFor();
    check(true, "an invalid tenant name is explained with the API's message");
    await tform.getByLabel(/Name/).fill("third");
    await tform.getByRole("button", { name: "Create tenant" }).click();
    await pageOp.getByRole("status").filter({ hasText: "Tenant third created" }).waitFor();
    await eventually("the new tenant is selected", async () => (await pageOp.getByLabel("Tenant", { exact: true }).inputValue()) === "third");
    check(true, "the new tenant is selected");
    await newTenantJourney(browser, pageOp, { dash: dev.dash, proxy: dev.proxy, mockUrl, upstreamKey }, consoleErrors);
    await guardrailAndCache(page, dev);
    await tierAndIncident(pageOp, dev);
    const unexpected = consoleErrors.filter((t) => /Content Security Policy|Uncaught|TypeError/.test(t));
    check(unexpected.length === 0, `no script errors or CSP violations (${unexpected.join("; ")})`);
    console.log("dashboard e2e: all checks passed");
  } catch (e) {
    mkdirSync(artifacts, { recursive: true });
    for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
      await p.screenshot({ path: path.join(artifacts, `page-${i}.png`) }).catch(() => {});
    }
    throw e;
  } finally {
    await browser.close();
  }
}

main()
  .then(() => (process.exitCode = 0))
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of procs) p.kill("SIGTERM");
    rmSync(tmp, { recursive: true, force: true });
  });
