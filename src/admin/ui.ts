// The admin dashboard's two routes (docs/dashboard.md): GET /ui, one self-contained page
// (assets/dashboard.html: inline CSS and script, no external asset, works offline), and
// GET /ui/data.json, the document it polls every 2 s (admin/ui-data.ts). server.ts mounts
// these beside its own routes and applies its guards (loopback Host, no cross-origin POST).
//
// The page shows strings clients chose (certificate subjects, SPIFFE IDs), so it is
// locked down: its script only ever writes text (textContent), and the Content-Security-
// Policy allows nothing but the page's own inline script and style, by hash, and fetches
// to its own origin: an injected tag or handler would not run even if one got through.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const DASHBOARD_HTML = fileURLToPath(new URL('../../../assets/dashboard.html', import.meta.url));

export interface UiPage {
  html: Buffer;
  csp: string;
}

/** 'sha256-...' of every inline <tag>...</tag> body, as the browser hashes it (the exact bytes). */
function inlineHashes(html: string, tag: 'script' | 'style'): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))) {
    out.push(`'sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}'`);
  }
  return out;
}

/** The page and the CSP that lets exactly its inline script and style run. */
export function loadUiPage(file = DASHBOARD_HTML): UiPage {
  const text = readFileSync(file, 'utf8');
  const scripts = inlineHashes(text, 'script');
  const styles = inlineHashes(text, 'style');
  const csp = [
    "default-src 'none'",
    `script-src ${scripts.join(' ') || "'none'"}`,
    `style-src ${styles.join(' ') || "'none'"}`,
    "connect-src 'self'",
    // the page names no icon; this keeps the browser from asking for /favicon.ico
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html: Buffer.from(text, 'utf8'), csp };
}

/** Headers every dashboard response carries. */
const COMMON = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // the data names clients: no other site may embed or read it
  'cross-origin-resource-policy': 'same-origin',
} as const;

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

/**
 * The dashboard's routes, for server.ts's route table. `data` builds the document the page
 * polls. The page is read once, at the first request, and kept.
 */
export function uiRoutes(data: () => Promise<object> | object): Record<string, { method: 'GET'; handle: Handler }> {
  let page: UiPage | undefined;
  return {
    '/ui': {
      method: 'GET',
      handle: (_q, res) => {
        page ??= loadUiPage();
        res.writeHead(200, {
          ...COMMON,
          'content-type': 'text/html; charset=utf-8',
          'content-length': page.html.length,
          'content-security-policy': page.csp,
          'x-frame-options': 'DENY',
        });
        res.end(page.html);
      },
    },
    '/ui/data.json': {
      method: 'GET',
      handle: async (_q, res) => {
        const body = Buffer.from(`${JSON.stringify(await data())}\n`, 'utf8');
        res.writeHead(200, {
          ...COMMON,
          'content-type': 'application/json',
          'content-length': body.length,
          'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
        });
        res.end(body);
      },
    },
  };
}
