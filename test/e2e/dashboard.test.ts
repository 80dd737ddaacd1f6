// The admin dashboard (/ui, issue 15 item 1) in a real Chromium driven by playwright-core,
// against the real CLI with 2 workers and a real PKI: the page renders with no console
// error and no CSP violation, shows certificate expiry, shows a client a route denied (curl
// with a real certificate) and one refused at the handshake (untrusted CA) with their
// reasons soon after, updates without a reload, renders a certificate subject full of
// HTML as text, and its data covers both workers. Skipped only when no chromium exists
// (.ci/run installs Debian's `chromium`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { issueCert } from '../../src/pki/issue.js';
import { useProxy, tlsListener, curl, certArgs, eventually } from '../helpers/proxy.js';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/lib/chromium/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
const skip = CHROMIUM ? false : 'no chromium binary (set CHROMIUM_PATH or `apt-get install chromium`; .ci/run installs it)';

/** A subject a certificate issuer chose, with markup that must show up as text. */
const HTML_CN = '<img src=x id=injected onerror="document.title=1">';

const fx = useProxy(({ pki, up }) => ({
  workers: 2,
  listeners: [
    tlsListener(pki, {
      routes: [
        { name: 'reports', match: { path: '/reports' }, allow: [{ cn: 'reporting' }], upstream: 'app' },
        { name: 'echo', upstream: 'app' },
      ],
    }),
  ],
  upstreams: { app: { endpoints: [up.url] } },
}), {
  // round-robin hand-off: consecutive connections go to alternate workers, so the counts
  // below can only add up if both workers' recorders were asked and merged
  env: { PORTCULLIS_SCHED: 'rr' },
});

let browser: Browser | undefined;
let page: Page;
const consoleErrors: string[] = [];
let navigations = 0;
const ui = (path = '/ui') => `http://127.0.0.1:${fx.cli.adminPort}${path}`;
let htmlClient: { cert: string; key: string };

// node:test does not promise that a file's root before() hooks run one after the other,
// so this waits for useProxy's fixture instead of racing it
let ready: Promise<void> | undefined;
const setup = () => (ready ??= start());

async function start(): Promise<void> {
  await eventually(() => fx.cli !== undefined, 'the proxy fixture', 30_000);
  const issued = await issueCert(fx.pki.handles.root, { type: 'client', cn: HTML_CN, o: ['Example'] });
  htmlClient = { cert: join(fx.dir, 'html-client.crt'), key: join(fx.dir, 'html-client.key') };
  writeFileSync(htmlClient.cert, issued.certPem);
  writeFileSync(htmlClient.key, issued.keyPem, { mode: 0o600 });
  browser = await chromium.launch({ executablePath: CHROMIUM!, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1500 } });
  // CSP violations are reported on the console as errors ("Refused to ...")
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++;
  });
}

after(async () => {
  await browser?.close();
});

/** Waits until the element's text matches `re` (the page polls every 2 s). */
async function waitText(selector: string, re: RegExp, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  let text = '';
  for (;;) {
    text = (await page.locator(selector).textContent()) ?? '';
    if (re.test(text)) return text;
    if (Date.now() > deadline) assert.fail(`${selector} never showed ${re}; it shows:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('dashboard: /ui is one page with a strict CSP (default-src none, script by hash), nosniff, no framing', { skip }, async () => {
  await setup();
  const r = await fetch(ui());
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
  const csp = r.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  const html = await r.text();
  assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=["']?(https?:)?\/\//i, 'no external asset');
  assert.doesNotMatch(html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'the script never parses data as HTML');
  const d = await fetch(ui('/ui/data.json'));
  assert.equal(d.status, 200);
  assert.equal(d.headers.get('x-content-type-options'), 'nosniff');
  // the admin listener's DNS-rebinding guard covers the dashboard too
  const rebound = await new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: fx.cli.adminPort, path: '/ui/data.json', headers: { host: 'evil.example:80' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
  assert.equal(rebound, 403);
});

test('dashboard: renders with certificate expiry and no console error or CSP violation', { skip }, async () => {
  await setup();
  await page.goto(ui());
  const certs = await waitText('#certs', /CN=localhost/);
  assert.match(certs, /CN=Test Root CA/);
  const badge = page.locator('#certs [data-days]').first();
  const days = Number(await badge.getAttribute('data-days'));
  assert.ok(days >= 0 && days <= 90, `days left ${days}`);
  assert.match((await badge.getAttribute('class')) ?? '', /\b(ok|warn|crit)\b/);
  await waitText('#live', /live · updated/);
  await waitText('#workers', /^2\/2 answering$/);
  await waitText('#routes', /reports/);
  assert.deepEqual(consoleErrors, []);
});

test('dashboard-shows-denied-client: a route denial and an untrusted-CA handshake appear with their reasons, without a reload', { skip }, async () => {
  await setup();
  assert.equal(navigations, 1);
  const before = fx.up.received.length;
  // payment-service is not allowed on /reports: 403 from portcullis, nothing reaches the upstream
  const denied = await curl(`https://localhost:${fx.cli.port}/reports/q1`, certArgs(fx.pki.ca.cert, fx.pki.client));
  assert.equal(denied.status, 403, denied.body);
  assert.equal(JSON.parse(denied.body).error, 'forbidden');
  // a certificate from a CA the listener does not trust fails the handshake
  const untrusted = await curl(`https://localhost:${fx.cli.port}/`, certArgs(fx.pki.ca.cert, fx.pki.untrusted));
  assert.notEqual(untrusted.code, 0);
  assert.equal(fx.up.received.length, before, 'neither request reached the upstream');

  await waitText('#refusals', /unknown_ca/);
  const refusals = await waitText('#refusals', /no allow rule matched/);
  // each group with the sentence (cause and fix) the client got or the log carries
  assert.match(refusals, /route reports does not allow this client \(no allow rule matched\); ask for access/);
  assert.match(refusals, /not signed by a CA this listener trusts/);
  assert.match(refusals, /CN=untrusted-client/);
  const clients = await waitText('#clients', /payment-service[\s\S]*no allow rule matched on reports/);
  assert.match(clients, /spiffe:\/\/example\.org\/ns\/prod\/sa\/payment/);
  await waitText('#clients', /untrusted-client[\s\S]*unknown_ca/);
  await waitText('#routes', /reports[\s\S]*no allow rule matched: 0 \/ 1/);
  assert.equal(navigations, 1, 'the page was not reloaded');
  assert.deepEqual(consoleErrors, []);
});

test('dashboard: a new request shows up without page.reload()', { skip }, async () => {
  await setup();
  assert.doesNotMatch((await page.locator('#clients').textContent()) ?? '', /reporting/);
  const r = await curl(`https://localhost:${fx.cli.port}/reports/ok`, certArgs(fx.pki.ca.cert, fx.pki.client2));
  assert.equal(r.status, 200, r.body);
  assert.equal(fx.up.received.at(-1)?.url, '/reports/ok');
  const clients = await waitText('#clients', /CN=reporting/);
  assert.match(clients, /spiffe:\/\/example\.org\/ns\/staging\/sa\/reporting/);
  await waitText('#routes', /routes\[reports\]\.allow\[0\]: 1 \/ 0/);
  assert.equal(navigations, 1, 'the page was not reloaded');
});

test('dashboard-escapes-client-strings: a certificate subject full of HTML is shown as text, never as markup', { skip }, async () => {
  await setup();
  const r = await curl(`https://localhost:${fx.cli.port}/hello`, certArgs(fx.pki.ca.cert, htmlClient));
  assert.equal(r.status, 200, r.body);
  await waitText('#clients', /<img src=x id=injected/);
  assert.equal(await page.locator('#injected').count(), 0, 'no element was created from the subject');
  assert.equal(await page.title(), 'portcullis dashboard');
  assert.deepEqual(consoleErrors, []);
});

test('dashboard data covers every worker: requests on separate connections are all counted', { skip }, async () => {
  await setup();
  // 8 fresh connections, handed to the 2 workers in turn (PORTCULLIS_SCHED=rr above)
  for (let i = 0; i < 8; i++) {
    const r = await curl(`https://localhost:${fx.cli.port}/count/${i}`, certArgs(fx.pki.ca.cert, fx.pki.noEku));
    assert.equal(r.status, 200, r.body);
  }
  let last: { workers: { answered: number }; clients: { subject: string | null; requests: number }[] } | undefined;
  const deadline = Date.now() + 5000;
  for (;;) {
    last = (await (await fetch(ui('/ui/data.json'))).json()) as typeof last;
    const c = last!.clients.find((x) => x.subject?.includes('CN=no-eku'));
    if (c?.requests === 8 && last!.workers.answered === 2) break;
    if (Date.now() > deadline) assert.fail(`the dashboard never counted 8 requests from 2 workers: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('dashboard: reload history shows a failed reload with its error, then an applied one', { skip }, async () => {
  await setup();
  const cfgPath = join(fx.dir, readdirSync(fx.dir).find((f) => /^portcullis-.*\.json$/.test(f))!);
  const good = readFileSync(cfgPath, 'utf8');
  writeFileSync(cfgPath, good.replace('"upstream": "app"', '"upstream": "nope"'));
  const bad = await fetch(ui('/reload'), { method: 'POST' });
  assert.equal(bad.status, 500);
  await waitText('#reloads', /failed[\s\S]*upstream "nope" is not defined/);
  writeFileSync(cfgPath, good);
  const ok = await fetch(ui('/reload'), { method: 'POST' });
  assert.equal(ok.status, 200);
  await waitText('#reloads', /applied/);
  assert.equal(navigations, 1, 'the page was not reloaded');
  assert.deepEqual(consoleErrors, []);
  await page.screenshot({ path: '/tmp/dashboard.png', fullPage: true });
});
