// Unit tests for route compilation and matching: order, host forms and wildcards, path
// prefix / exact / regex, methods, and hostWithoutPort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRoutes, hostWithoutPort, matchRoute, type RouteInput } from './route-table.js';
import { normalizePath } from './path.js';
import { PortcullisErrors } from '../errors.js';

function nameOf(routes: RouteInput[], host: string, path: string, method = 'GET'): string | undefined {
  return matchRoute(compileRoutes(routes), host, path, method)?.route.name;
}

test('a route without match matches everything, including OPTIONS *', () => {
  const table = compileRoutes([{ name: 'all' }]);
  assert.deepEqual(matchRoute(table, '', '/x', 'DELETE'), { route: { name: 'all' }, index: 0 });
  assert.equal(matchRoute(table, 'a', '*', 'OPTIONS')?.index, 0);
  assert.equal(nameOf([{ name: 'p', match: { path: '/' } }], 'a', '*', 'OPTIONS'), undefined);
});

test('first match wins, and index is the position in the list', () => {
  const routes: RouteInput[] = [
    { name: 'charge', match: { path: '/v1/charge', methods: ['POST'] } },
    { name: 'v1', match: { path: '/v1/' } },
    { name: 'v1-again', match: { path: '/v1/' } },
    { name: 'rest' },
  ];
  const table = compileRoutes(routes);
  assert.deepEqual(matchRoute(table, 'h', '/v1/charge', 'POST'), { route: routes[0], index: 0 });
  assert.equal(matchRoute(table, 'h', '/v1/charge', 'GET')?.index, 1);
  assert.equal(matchRoute(table, 'h', '/v2', 'GET')?.index, 3);
  assert.equal(matchRoute(table, 'h', '/v1/charge', 'POST')?.route, routes[0], 'the config object itself');
  assert.equal(nameOf(routes.slice(0, 3), 'h', '/other'), undefined);
});

test('path is a plain string prefix', () => {
  const r: RouteInput[] = [{ name: 'api', match: { path: '/api' } }];
  assert.equal(nameOf(r, 'h', '/api'), 'api');
  assert.equal(nameOf(r, 'h', '/api/x'), 'api');
  assert.equal(nameOf(r, 'h', '/apiary'), 'api', 'documented: no segment boundary');
  assert.equal(nameOf(r, 'h', '/ap'), undefined);
  assert.equal(nameOf(r, 'h', '/API'), undefined, 'case-sensitive');
  assert.equal(nameOf([{ name: 'd', match: { path: '/api/' } }], 'h', '/api'), undefined);
});

test('path_exact and path_regex', () => {
  const exact: RouteInput[] = [{ name: 'e', match: { path_exact: '/healthz' } }];
  assert.equal(nameOf(exact, 'h', '/healthz'), 'e');
  assert.equal(nameOf(exact, 'h', '/healthz/'), undefined);
  assert.equal(nameOf(exact, 'h', '/healthzx'), undefined);
  const re: RouteInput[] = [{ name: 'r', match: { path_regex: '/users/[0-9]+|/me' } }];
  assert.equal(nameOf(re, 'h', '/users/42'), 'r');
  assert.equal(nameOf(re, 'h', '/me'), 'r');
  assert.equal(nameOf(re, 'h', '/users/42/delete'), undefined, 'anchored at the end');
  assert.equal(nameOf(re, 'h', '/x/users/42'), undefined, 'anchored at the start');
  assert.equal(nameOf(re, 'h', '/mex'), undefined, 'alternation is anchored as a whole');
  assert.equal(nameOf(re, 'h', '/x/me'), undefined);
  // all given conditions must hold together
  const both: RouteInput[] = [{ name: 'b', match: { path: '/users/', path_regex: '.*/[0-9]+' } }];
  assert.equal(nameOf(both, 'h', '/users/7'), 'b');
  assert.equal(nameOf(both, 'h', '/groups/7'), undefined);
});

test('methods: exact list, HEAD not implied by GET', () => {
  const r: RouteInput[] = [{ name: 'read', match: { methods: ['GET'] } }];
  assert.equal(nameOf(r, 'h', '/', 'GET'), 'read');
  assert.equal(nameOf(r, 'h', '/', 'HEAD'), undefined);
  assert.equal(nameOf(r, 'h', '/', 'get'), undefined);
  assert.equal(nameOf([{ name: 'rh', match: { methods: ['GET', 'HEAD'] } }], 'h', '/', 'HEAD'), 'rh');
});

test('host: exact, case-insensitive, port and trailing dot ignored', () => {
  const r: RouteInput[] = [{ name: 'api', match: { host: ['api.example.com'] } }];
  for (const h of ['api.example.com', 'API.Example.COM', 'api.example.com:8443', 'api.example.com.', 'api.example.com.:443']) {
    assert.equal(nameOf(r, h, '/'), 'api', h);
  }
  for (const h of ['example.com', 'x.api.example.com', 'api.example.com.evil', '', 'api.example.co']) {
    assert.equal(nameOf(r, h, '/'), undefined, h);
  }
  // config entries are normalized the same way
  assert.equal(nameOf([{ name: 'n', match: { host: ['API.example.com.'] } }], 'api.example.com', '/'), 'n');
});

test('host: "*.example.com" matches exactly one label', () => {
  const r: RouteInput[] = [{ name: 'w', match: { host: ['*.example.com', 'other.org'] } }];
  assert.equal(nameOf(r, 'a.example.com', '/'), 'w');
  assert.equal(nameOf(r, 'A.EXAMPLE.COM:8443', '/'), 'w');
  assert.equal(nameOf(r, 'other.org', '/'), 'w');
  assert.equal(nameOf(r, 'a.b.example.com', '/'), undefined);
  assert.equal(nameOf(r, 'example.com', '/'), undefined);
  assert.equal(nameOf(r, '.example.com', '/'), undefined);
  assert.equal(nameOf(r, 'aexample.com', '/'), undefined);
  assert.equal(nameOf(r, 'a.example.com.evil', '/'), undefined);
});

test('host: IPv6 with and without port, either spelling in config', () => {
  const r: RouteInput[] = [
    { name: 'v6', match: { host: ['::1'] } },
    { name: 'v6b', match: { host: ['[2001:DB8::1]'] } },
    { name: 'v4', match: { host: ['127.0.0.1'] } },
  ];
  assert.equal(nameOf(r, '[::1]:8443', '/'), 'v6');
  assert.equal(nameOf(r, '[::1]', '/'), 'v6');
  assert.equal(nameOf(r, '[2001:db8::1]:443', '/'), 'v6b');
  assert.equal(nameOf(r, '127.0.0.1:8443', '/'), 'v4');
  assert.equal(nameOf(r, '[::2]:8443', '/'), undefined);
});

test('hostWithoutPort', () => {
  assert.equal(hostWithoutPort('example.com'), 'example.com');
  assert.equal(hostWithoutPort('Example.COM:8443'), 'example.com');
  assert.equal(hostWithoutPort('example.com.'), 'example.com');
  assert.equal(hostWithoutPort('example.com.:80'), 'example.com');
  assert.equal(hostWithoutPort('example.com:'), 'example.com');
  assert.equal(hostWithoutPort('[::1]:8443'), '[::1]');
  assert.equal(hostWithoutPort('[::1]'), '[::1]');
  assert.equal(hostWithoutPort('[FE80::1]:1'), '[fe80::1]');
  assert.equal(hostWithoutPort('::1'), '[::1]');
  assert.equal(hostWithoutPort('10.0.0.1:80'), '10.0.0.1');
  assert.equal(hostWithoutPort(''), '');
  assert.equal(hostWithoutPort('\u212Aube'), '\u212Aube', 'no Unicode case folding');
  assert.equal(hostWithoutPort('K\u212Aube.COM:1'), 'k\u212Aube.com', 'ASCII folded, the rest kept');
  assert.equal(nameOf([{ name: 'k', match: { host: ['kube.example.com'] } }], '\u212Aube.example.com', '/'), undefined);
  const s = 'already.normal';
  assert.equal(hostWithoutPort(s), s);
});

test('host is normalized only when some route looks at it', () => {
  assert.equal(compileRoutes([{ name: 'a', match: { path: '/' } }]).usesHost, false);
  assert.equal(compileRoutes([{ name: 'a' }, { name: 'b', match: { host: ['x'] } }]).usesHost, true);
});

test('normalized paths defeat dot-segment and encoded-dot bypasses of a prefix route', () => {
  const table = compileRoutes([
    { name: 'public', match: { path: '/public/' } },
    { name: 'admin', match: { path: '/admin' } },
  ]);
  for (const target of ['/public/%2e%2e/admin', '/public/../admin', '/public/./../admin', '/public/.%2E/admin?x=1', '//admin', '/public//..//admin']) {
    const n = normalizePath(target, true);
    assert.ok(n.ok, target);
    assert.equal(n.path, '/admin', target);
    assert.equal(matchRoute(table, 'h', n.path, 'GET')?.route.name, 'admin', target);
  }
  assert.equal(normalizePath('/public/..%2Fadmin', true).ok, false);
});

test('invalid route matches are reported with their paths', () => {
  assert.throws(
    () =>
      compileRoutes(
        [
          { name: 'a', match: { path_regex: '(' } },
          { name: 'b', match: { host: ['api.example.com:8443', 'a.*.com', '', '*.'] } },
          { name: 'c', match: { path: 'v1', path_exact: 'x' } },
        ],
        'listeners[0].routes',
      ),
    (err: unknown) => {
      assert.ok(err instanceof PortcullisErrors);
      assert.deepEqual(
        err.errors.map((e) => e.path),
        [
          'listeners[0].routes[0].match.path_regex',
          'listeners[0].routes[1].match.host[0]',
          'listeners[0].routes[1].match.host[1]',
          'listeners[0].routes[1].match.host[2]',
          'listeners[0].routes[1].match.host[3]',
          'listeners[0].routes[2].match.path',
          'listeners[0].routes[2].match.path_exact',
        ],
      );
      assert.match(err.errors[0]!.message, /^listeners\[0\]\.routes\[0\]\.match\.path_regex: invalid regular expression/);
      return true;
    },
  );
});
