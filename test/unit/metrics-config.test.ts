import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, DEFAULT_METRICS_PORT, loadConfig } from '../../common/config/env.js';

test('METRICS_PORT: 9464 when unset or blank, 0 turns the port off, anything else must be a port', () => {
  assert.equal(DEFAULT_METRICS_PORT, 9464);
  assert.equal(loadConfig({}).metrics.port, 9464);
  assert.equal(loadConfig({ METRICS_PORT: ' ' }).metrics.port, 9464);
  assert.equal(loadConfig({ METRICS_PORT: '0' }).metrics.port, 0);
  assert.equal(loadConfig({ METRICS_PORT: '9465' }).metrics.port, 9465);
  for (const value of ['abc', '-1', '65536', '9464.5']) {
    assert.throws(() => loadConfig({ METRICS_PORT: value }), (error: unknown) => error instanceof ConfigError && error.message.startsWith('METRICS_PORT'), value);
  }
});
