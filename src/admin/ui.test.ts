// The dashboard's routes on a real admin listener (port 0, fake provider): the CSP admits
// exactly the page's own inline script and style by hash, the data route returns what the
// provider built, and without a `ui` provider there is no /ui at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import pino from 'pino';
import { startAdmin, type AdminProvider } from './server.js';
import { loadUiPage } from './ui.js';

const log = pino({ level: 'silent' });
const base: AdminProvider = { ready: () => true, metrics: async () => '', status: () => ({}) };

async function admin(t: { after(fn: () => Promise<void>): void }, provider: AdminProvider) {
  const srv = await startAdmin({ host: '127.0.0.1', port: 0, provider, log });
  t.after(() => srv.close());
  return (p: string, init?: RequestInit) => fetch(`http://127.0.0.1:${srv.port}${p}`, init);
}

test('the CSP lists the sha256 of every inline script and style of the page, and nothing inline else', () => {
  const { html, csp } = loadUiPage();
  const text = html.toString('utf8');
  const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
  const script = /<script>([\s\S]*?)<\/script>/.exec(text)![1]!;
  const style = /<style>([\s\S]*?)<\/style>/.exec(text)![1]!;
  assert.ok(csp.includes(`script-src ${hash(script)}`), csp);
  assert.ok(csp.includes(`style-src ${hash(style)}`), csp);
  assert.match(csp, /^default-src 'none';/);
  // an inline handler or style attribute would be blocked by this CSP: the page has none
  assert.doesNotMatch(text, /\son[a-z]+=|\sstyle=/i);
  assert.doesNotMatch(text, /<script[^>]*\ssrc=/i);
});

test('GET /ui and /ui/data.json with a ui provider; HEAD works; POST is 405', async (t) => {
  const get = await admin(t, { ...base, ui: async () => ({ clients: [{ subject: '<b>x</b>' }] }) });
  const page = await get('/ui');
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  assert.match(await page.text(), /<title>portcullis dashboard<\/title>/);
  const data = await get('/ui/data.json');
  assert.equal(data.status, 200);
  assert.match(data.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await data.json(), { clients: [{ subject: '<b>x</b>' }] });
  assert.equal((await get('/ui', { method: 'HEAD' })).status, 200);
  assert.equal((await get('/ui/data.json', { method: 'POST' })).status, 405);
});

test('without a ui provider, /ui is 404 like any unknown path', async (t) => {
  const get = await admin(t, base);
  assert.equal((await get('/ui')).status, 404);
  assert.equal((await get('/ui/data.json')).status, 404);
});
