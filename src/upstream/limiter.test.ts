// Unit tests for UpstreamLimiter, one per rule in its header: slots, eviction of idle
// connections, the FIFO queue (max_pending, cancel, wait timeout), hand-over of an idle
// connection to the head, in-flight requests (max_requests), and the refusal messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamLimiter, UpstreamOverloaded, type Waiter } from './limiter.js';

function limiter(c: number, p: number, r = 100, waitMs = 0): UpstreamLimiter {
  return new UpstreamLimiter('app', { max_connections: c, max_pending: p, max_requests: r }, waitMs);
}

/** A waiter that records what happened to it. */
function waiter(owner: object = {}, log: string[] = [], name = 'w'): Waiter & { granted_: number; expired_: UpstreamOverloaded[] } {
  const w = {
    owner,
    granted_: 0,
    expired_: [] as UpstreamOverloaded[],
    granted() {
      w.granted_++;
      log.push(`granted ${name}`);
    },
    expired(e: UpstreamOverloaded) {
      w.expired_.push(e);
      log.push(`expired ${name}`);
    },
  };
  return w;
}

test('slots are given while fewer than max_connections are open, and come back on closed()', () => {
  const l = limiter(2, 5);
  assert.equal(l.tryOpen(), true);
  assert.equal(l.tryOpen(), true);
  assert.equal(l.tryOpen(), false);
  assert.equal(l.connections, 2);
  l.closed();
  assert.equal(l.connections, 1);
  assert.equal(l.tryOpen(), true);
});

test('at the limit an idle connection of another pool is closed to make room', () => {
  const l = limiter(1, 5);
  let idle = 1;
  l.addIdleCloser({
    closeIdle: () => {
      if (idle === 0) return false;
      idle--;
      l.closed(); // closing a connection frees its slot synchronously
      return true;
    },
  });
  assert.equal(l.tryOpen(), true);
  assert.equal(l.tryOpen(), true, 'the idle connection made room');
  assert.equal(idle, 0);
  assert.equal(l.connections, 1);
  assert.equal(l.tryOpen(), false, 'nothing idle left to close');
});

test('waiters are served first in, first out as slots free up', () => {
  const log: string[] = [];
  const l = limiter(1, 5);
  assert.equal(l.tryOpen(), true);
  const a = waiter({}, log, 'a');
  const b = waiter({}, log, 'b');
  assert.equal(l.wait(a), true);
  assert.equal(l.wait(b), true);
  assert.equal(l.pending, 2);
  l.closed();
  assert.deepEqual(log, ['granted a']);
  assert.equal(l.connections, 1, 'the freed slot went to a');
  l.closed();
  assert.deepEqual(log, ['granted a', 'granted b']);
  assert.equal(l.pending, 0);
});

test('a newcomer does not overtake waiters by closing an idle connection', () => {
  const l = limiter(1, 5);
  let asked = 0;
  l.addIdleCloser({ closeIdle: () => (asked++, false) });
  assert.equal(l.tryOpen(), true);
  assert.equal(l.wait(waiter()), true);
  assert.equal(l.tryOpen(), false);
  assert.equal(asked, 0);
});

test('past max_pending wait() says no, and the refusal names the upstream, the limit and the fix', () => {
  const l = limiter(1, 2);
  l.tryOpen();
  assert.equal(l.wait(waiter()), true);
  assert.equal(l.wait(waiter()), true);
  assert.equal(l.wait(waiter()), false);
  assert.equal(l.pending, 2);
  const e = l.pendingRefusal();
  assert.equal(e.code, 'PCL_UPSTREAM_OVERLOADED');
  assert.equal(e.limit, 'max_pending');
  assert.match(e.message, /^upstream app has all 1 connections busy and 2 requests already waiting .*raise upstreams\.app\.limits\.max_pending or max_connections$/);
});

test('a cancelled waiter (its client went away) leaves the queue and never hears back', () => {
  const log: string[] = [];
  const l = limiter(1, 1);
  l.tryOpen();
  const a = waiter({}, log, 'a');
  l.wait(a);
  l.cancel(a);
  assert.equal(l.pending, 0);
  assert.equal(l.wait(waiter({}, log, 'b')), true, 'its place is free again');
  l.closed();
  assert.deepEqual(log, ['granted b']);
});

test('a waiter that gets no slot within waitMs expires with a max_connections refusal', async () => {
  const l = limiter(1, 5, 100, 30);
  l.tryOpen();
  const a = waiter();
  l.wait(a);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(a.granted_, 0);
  assert.equal(a.expired_.length, 1);
  assert.equal(a.expired_[0]!.limit, 'max_connections');
  assert.match(a.expired_[0]!.message, /^upstream app had no free connection within 30 ms .*raise upstreams\.app\.limits\.max_connections$/);
  assert.equal(l.pending, 0);
  l.closed();
  assert.equal(a.granted_, 0, 'an expired waiter is not granted later');
});

test('a granted waiter is not expired afterwards', async () => {
  const l = limiter(1, 5, 100, 30);
  l.tryOpen();
  const a = waiter();
  l.wait(a);
  l.closed();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(a.granted_, 1);
  assert.equal(a.expired_.length, 0);
});

test('a connection turning idle serves the head when it waits for the same pool', () => {
  const l = limiter(1, 5);
  const poolA = {};
  const poolB = {};
  l.tryOpen();
  const a = waiter(poolA);
  const b = waiter(poolB);
  l.wait(a);
  l.wait(b);
  assert.equal(l.takeHeadFor(poolB), undefined, 'b is not the head: FIFO');
  assert.equal(l.mustYield(), true, 'so the idle connection of pool B must close instead');
  assert.equal(l.takeHeadFor(poolA), a);
  assert.equal(a.granted_, 0, 'served on the idle connection, no new slot');
  assert.equal(l.connections, 1);
  assert.equal(l.pending, 1);
});

test('takeAllFor() takes every waiter of one pool (an h2 session carries them all)', () => {
  const l = limiter(1, 5);
  const h2 = {};
  l.tryOpen();
  const a = waiter(h2);
  const b = waiter({});
  const c = waiter(h2);
  l.wait(a);
  l.wait(b);
  l.wait(c);
  assert.deepEqual(l.takeAllFor(h2), [a, c]);
  assert.equal(l.pending, 1);
});

test('max_requests bounds requests in flight; endRequest() gives the slot back', () => {
  const l = limiter(10, 10, 2);
  assert.equal(l.startRequest(), true);
  assert.equal(l.startRequest(), true);
  assert.equal(l.startRequest(), false);
  const e = l.requestsRefusal();
  assert.equal(e.limit, 'max_requests');
  assert.match(e.message, /^upstream app already has 2 requests in flight .*raise upstreams\.app\.limits\.max_requests$/);
  l.endRequest();
  assert.equal(l.requests, 1);
  assert.equal(l.startRequest(), true);
});
