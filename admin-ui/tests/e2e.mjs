// End-to-end test of the dashboard in a real browser: Debian's chromium driven by playwright-core, against the
// real `hearth serve` (a temp state dir, the demo model, embedded SQLite) over loopback.
//
//   HEARTH_BIN=…/hearth HEARTH_MODEL=…/SmolLM2-135M-Instruct-Q4_1.gguf node tests/e2e.mjs
//
// Screenshots of every page go to $E2E_ARTIFACTS (default admin-ui/test-results/); with UPDATE_SCREENSHOTS=1
// they are also copied to docs/screenshots/.
import { chromium } from "playwright-core";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, copyFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const bin = process.env.HEARTH_BIN;
const model = process.env.HEARTH_MODEL;
assert.ok(bin && existsSync(bin), `HEARTH_BIN must name the hearth binary (got ${bin})`);
assert.ok(model && existsSync(model), `HEARTH_MODEL must name the demo GGUF (got ${model})`);
const artifacts = process.env.E2E_ARTIFACTS ?? join(here, "..", "test-results");
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const state = mkdtempSync(join(tmpdir(), "hearth-e2e-"));
const config = join(state, "hearth.toml");
// No RAPL on most VMs: an estimated CPU power gives every request its (estimated) joules, so the energy figures
// on every page are exercised.
writeFileSync(config, "[engine]\nthreads = 1\nmax_sequences = 4\ncontext = 2048\n[power]\ncpu_watts_estimate = 20\n");
const cli = (...args) => {
  const r = spawnSync(bin, ["--state-dir", state, "--config", config, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, `hearth ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};
cli("model", "import", model, "--name", "smollm2");

const daemon = spawn(bin, ["--state-dir", state, "--config", config, "serve", "--bind", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "pipe"],
});
let log = "";
daemon.stderr.on("data", (d) => (log += d));
const base = await new Promise((resolve, reject) => {
  const lines = createInterface({ input: daemon.stdout });
  lines.on("line", (l) => {
    const m = l.match(/listening on (http:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
  daemon.on("exit", (code) => reject(new Error(`hearth serve exited (${code}):\n${log}`)));
  setTimeout(() => reject(new Error(`hearth serve did not listen:\n${log}`)), 30000);
});
// A mirror on loopback for the Pull form: the demo model, streamed with its length.
const mirror = createServer((req, res) => {
  if (req.url !== "/mirror/smollm2.gguf") return res.writeHead(404).end();
  res.writeHead(200, { "content-length": statSync(model).size, "content-type": "application/octet-stream" });
  createReadStream(model).pipe(res);
});
await new Promise((r) => mirror.listen(0, "127.0.0.1", r));
const mirrorUrl = `http://127.0.0.1:${mirror.address().port}/mirror/smollm2.gguf`;
const firstPassword = readFileSync(join(state, "initial-admin-password"), "utf8").trim();

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

const shots = [];
async function shot(page, name) {
  await page.waitForTimeout(300); // charts draw on the next frame
  const file = join(artifacts, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/** Fails the test on any console error or CSP violation in the page. */
function watch(page, label) {
  const problems = [];
  page.on("console", (m) => {
    // A refused request shows as a console error by design (the tests provoke 401/403s); anything else is a bug.
    if (m.type() === "error" && !/status of (400|401|403|429)/.test(m.text())) problems.push(`${label}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${label}: ${e.message}`));
  page.on("response", (r) => r.status() === 404 && problems.push(`${label}: 404 ${r.url()}`));
  return problems;
}

const api = async (path, key, body) => {
  const r = await fetch(base + path, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  return { status: r.status, json: await r.json().catch(() => null) };
};

let failed = false;
try {
  // Sign in as the first admin, who must choose a password first.
  const admin = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await admin.newPage();
  const adminProblems = watch(page, "admin");
  await page.goto(base + "/");
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "wrong user name or password" }).waitFor();
  await shot(page, "01-sign-in");
  await page.getByLabel("Password").fill(firstPassword);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Choose a new password" }).waitFor();
  await shot(page, "02-forced-password-change");
  await page.getByLabel("Current password").fill(firstPassword);
  await page.getByLabel("New password (at least 8 characters)").fill("admin-e2e-password");
  await page.getByLabel("New password again").fill("admin-e2e-password");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  assert.ok(!existsSync(join(state, "initial-admin-password")), "the first-start password file is gone");

  // A CSRF-less state-changing request from the signed-in page is refused.
  const csrfless = await page.evaluate(async () => {
    const r = await fetch("/admin/users", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "mallory" }) });
    return r.status;
  });
  assert.equal(csrfless, 403, "POST without X-CSRF-Token");

  // Overview: live figures.
  await page.getByText("generated tokens/s", { exact: true }).waitFor();
  await shot(page, "03-overview");

  // Users: create a member, set a quota.
  await page.getByRole("link", { name: "Users" }).click();
  await page.getByRole("heading", { name: "Users" }).waitFor();
  const newUser = page.getByRole("form", { name: "new user" });
  await newUser.getByLabel("Name").fill("mia");
  await newUser.getByLabel("Password (for the dashboard; optional)").fill("mia-e2e-password");
  await newUser.getByRole("button", { name: "Create user" }).click();
  const miaRow = page.locator('tr[data-user="mia"]');
  await miaRow.waitFor();
  await miaRow.getByRole("button", { name: "Quota" }).click();
  const quota = page.getByRole("form", { name: "quota of mia" });
  await quota.getByLabel("Tokens per day").fill("5000");
  await quota.getByLabel("Requests per minute").fill("30");
  await quota.getByRole("button", { name: "Save quota" }).click();
  await quota.waitFor({ state: "detached" });
  const limits = await page.evaluate(() => fetch("/admin/users/mia/quota").then((r) => r.json()));
  assert.equal(limits.own.tokens_per_day, 5000);
  assert.equal(limits.own.requests_per_minute, 30);
  await miaRow.getByRole("button", { name: "Quota" }).click();
  await shot(page, "04-users-and-quota");

  // API keys: create one for mia, shown once with snippets; use it through the OpenAI API from the test.
  await page.getByRole("link", { name: "API keys" }).click();
  const newKey = page.getByRole("form", { name: "new key" });
  await newKey.getByLabel("User").fill("mia");
  await newKey.getByLabel("Name").fill("mia-laptop");
  await newKey.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key").textContent()).trim();
  assert.match(secret, /^hth_[a-z0-9]{12}_[a-z0-9]{32}$/);
  assert.ok((await page.locator("pre").first().textContent()).includes(secret), "the curl snippet carries the key");
  await shot(page, "05-api-key-created");
  const chat = await api("/v1/chat/completions", secret, {
    model: "smollm2",
    messages: [{ role: "user", content: "Say hello." }],
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(chat.status, 200, JSON.stringify(chat.json));
  const used = chat.json.usage.total_tokens;
  assert.ok(used > 0);

  // Usage: the request appears, by user.
  await page.getByRole("link", { name: "Usage" }).click();
  await page.getByLabel("Group by").selectOption("user");
  const miaUsage = page.locator('tr[data-group="mia"]');
  await miaUsage.waitFor();
  const cells = await miaUsage.locator("td").allTextContents();
  assert.equal(cells[1], "1", `one request: ${cells}`);
  assert.equal(Number(cells[4].replace(/[^0-9]/g, "")), used, `total tokens: ${cells}`);
  await shot(page, "06-usage");

  // Models, Devices, Jobs.
  await page.getByRole("link", { name: "Models" }).click();
  await page.locator('tr[data-model="smollm2"]').waitFor();
  const importForm = page.getByRole("form", { name: "import model" });
  await importForm.getByLabel("GGUF file on the server").fill("/nonexistent/model.gguf");
  await importForm.getByRole("button", { name: "Import" }).click();
  await page.getByRole("alert").filter({ hasText: "/nonexistent/model.gguf" }).waitFor();
  await importForm.getByLabel("GGUF file on the server").fill(model);
  await importForm.getByLabel("Name (default: from the file)").fill("smollm2-copy");
  await importForm.getByRole("button", { name: "Import" }).click();
  await page.locator('tr[data-model="smollm2-copy"]').waitFor({ timeout: 60000 });
  const pullForm = page.getByRole("form", { name: "pull model" });
  await pullForm.getByLabel("Pull a GGUF file from a URL").fill(mirrorUrl);
  await pullForm.getByLabel("Name").fill("smollm2-pulled");
  await pullForm.getByRole("button", { name: "Pull" }).click();
  await page.locator('[data-pull="smollm2-pulled"] .badge.done').waitFor({ timeout: 60000 });
  await page.locator('tr[data-model="smollm2-pulled"]').waitFor();
  await page.locator('tr[data-model="smollm2-copy"]').getByRole("button", { name: "Load" }).click();
  await page.locator('tr[data-model="smollm2-copy"] .badge.loaded').waitFor({ timeout: 60000 });
  await shot(page, "07-models");
  await page.getByRole("link", { name: "Devices" }).click();
  await page.getByRole("heading", { name: "CPU" }).waitFor();
  await shot(page, "08-devices");
  // Nodes: this one node (SQLite), alive, with the model loaded above and the imported ones.
  await page.getByRole("link", { name: "Nodes" }).click();
  const me = page.locator("tr[data-node]");
  await me.locator(".badge.loaded", { hasText: "alive" }).waitFor();
  await me.locator('[data-loaded="smollm2-copy"]').waitFor({ timeout: 30000 });
  assert.equal(await me.count(), 1);
  assert.match(await me.locator("td").nth(4).textContent(), /smollm2-pulled/);
  assert.match(await me.locator("td").nth(5).textContent(), /cpu: .+ of .+/);
  await shot(page, "08b-nodes");
  await page.getByRole("link", { name: "Jobs" }).click();
  await page.getByRole("heading", { name: "Batches" }).waitFor();
  await shot(page, "09-jobs");

  // Playground: a streamed reply with its figures.
  await page.getByRole("link", { name: "Playground" }).click();
  await page.getByLabel("Temperature").fill("0");
  await page.getByLabel("Max tokens").fill("40");
  await page.getByLabel("message").fill("What is the capital of France?");
  await page.getByRole("button", { name: "Send" }).click();
  const statsLine = page.locator(".stats-line").filter({ hasText: "tokens in" });
  await statsLine.waitFor({ timeout: 60000 });
  assert.match(await statsLine.textContent(), /tokens\/s.*on cpu.*J\/token \(estimate\)/, "speed, device and energy of the reply");
  assert.ok((await page.locator(".chat li.assistant .text").textContent()).trim().length > 0);
  await shot(page, "10-playground");

  // The member: their own usage against the quota, their keys, the playground — and no admin pages.
  const member = await browser.newContext({ viewport: { width: 1100, height: 800 }, colorScheme: "dark" });
  const mpage = await member.newPage();
  const memberProblems = watch(mpage, "member");
  await mpage.goto(base + "/");
  await mpage.getByLabel("User name").fill("mia");
  await mpage.getByLabel("Password").fill("mia-e2e-password");
  await mpage.getByRole("button", { name: "Sign in" }).click();
  await mpage.getByRole("heading", { name: "My usage" }).waitFor();
  const meter = mpage.getByLabel("Tokens today");
  await meter.waitFor();
  assert.match(await meter.textContent(), new RegExp(`${used}\\s*/\\s*5,?000`));
  assert.equal(await mpage.getByRole("link", { name: "Users" }).count(), 0, "no admin links for members");
  await shot(mpage, "11-member-usage");
  await mpage.getByRole("link", { name: "API keys" }).click();
  await mpage.locator('tr[data-key-name="mia-laptop"]').waitFor();
  await shot(mpage, "12-member-keys");
  await mpage.goto(base + "/#/users");
  await mpage.getByText("This page is for admins").waitFor();
  await shot(mpage, "13-member-refused");
  const refused = await mpage.evaluate(() => fetch("/admin/users").then((r) => r.status));
  assert.equal(refused, 403, "the API refuses a member's session on /admin");

  // Revoke the key in the admin's dashboard; the API refuses it at once.
  await page.getByRole("link", { name: "API keys" }).click();
  page.once("dialog", (d) => d.accept());
  const row = page.locator('tr[data-key-name="mia-laptop"]');
  await row.getByRole("button", { name: "Revoke" }).click();
  await row.getByText("revoked").waitFor();
  await shot(page, "14-key-revoked");
  const after = await api("/v1/chat/completions", secret, { model: "smollm2", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
  assert.equal(after.status, 401, "revoked key refused");

  // Sign out: the session is gone on the server too.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Hearth" }).waitFor();
  assert.equal(await page.evaluate(() => fetch("/auth/session").then((r) => r.status)), 401);

  // Small screens: the layout reflows (no horizontal page scroll).
  const phone = await browser.newContext({ viewport: { width: 390, height: 800 } });
  const ppage = await phone.newPage();
  await ppage.goto(base + "/");
  await ppage.getByLabel("User name").fill("admin");
  await ppage.getByLabel("Password").fill("admin-e2e-password");
  await ppage.keyboard.press("Enter");
  await ppage.getByRole("heading", { name: "Overview" }).waitFor();
  const overflow = await ppage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `page scrolls sideways by ${overflow}px on a phone`);
  await shot(ppage, "15-overview-phone");

  assert.deepEqual([...adminProblems, ...memberProblems], [], "console errors or CSP violations");
  console.log(`e2e: all checks passed; ${shots.length} screenshots in ${artifacts}`);
  if (process.env.UPDATE_SCREENSHOTS === "1") {
    const docs = join(repo, "docs", "screenshots");
    mkdirSync(docs, { recursive: true });
    for (const f of shots) copyFileSync(f, join(docs, f.split("/").pop()));
    console.log(`e2e: copied to ${docs}`);
  }
} catch (e) {
  failed = true;
  console.error(e);
  console.error(`--- daemon log (last 3000 chars) ---\n${log.slice(-3000)}`);
} finally {
  await browser.close();
  mirror.close();
  daemon.kill("SIGTERM");
  rmSync(state, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
