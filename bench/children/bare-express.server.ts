/**
 * Bare baseline (1): the least an express 5 JSON POST endpoint costs on this machine —
 * `express.json()` and a 202 `{ok: true}`, nothing else. Kurir's create and check are measured
 * against it at the same concurrency. `PORT` picks the port; it runs until SIGTERM.
 */
import express from 'express';

const app = express();
app.disable('x-powered-by');
app.post(['/v1/verifications', '/v1/verifications/:id/check'], express.json({ limit: '16kb' }), (_req, res) => {
  res.status(202).json({ ok: true });
});
app.get('/healthz', (_req, res) => {
  res.json({ status: 'ok' });
});
const server = app.listen(Number(process.env.PORT ?? 0), '0.0.0.0');
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
