// Unit tests for config durations: every accepted form, and the values that must be rejected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from './duration.js';

test('units convert to milliseconds', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('5s'), 5_000);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('90d'), 90 * 86_400_000);
});

test('compound and fractional durations add up', () => {
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1m0.5s'), 60_500);
  assert.equal(parseDuration('1.5s'), 1_500);
  assert.equal(parseDuration(' 2S '), 2_000, 'case and surrounding spaces do not matter');
});

test('bare numbers are milliseconds', () => {
  assert.equal(parseDuration(250), 250);
  assert.equal(parseDuration('250'), 250);
  assert.equal(parseDuration(0), 0);
  assert.equal(parseDuration(1.4), 1, 'fractions of a millisecond are rounded');
});

test('anything else is not a duration', () => {
  for (const bad of ['5x', '', 's', '-5s', '5 s', '5s5', 'ms', '1e3s', -1, Number.NaN, Infinity, true, null, undefined, {}, ['5s']]) {
    assert.equal(parseDuration(bad), undefined, `${JSON.stringify(bad)} must be rejected`);
  }
});

test('formatDuration prints the short form back', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(1_500), '1500ms');
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(90 * 86_400_000), '90d');
  assert.equal(parseDuration(formatDuration(93_784_000)), 93_784_000);
});
