/**
 * Preloaded (`--import`) into a role when the bench runs with `--profile`: SIGUSR2 starts a V8
 * CPU profile, SIGTERM stops it and writes it to `$BENCH_CPU_PROFILE` before Kurir's own
 * graceful shutdown runs. Kurir re-raises the signal at the end of its shutdown, so node's own
 * `--cpu-prof` (written only on a normal exit) would never be written.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const target = process.env.BENCH_CPU_PROFILE;
if (target !== undefined && target !== '') {
  const session = new Session();
  session.connect();
  let profiling = false;
  process.on('SIGUSR2', () => {
    if (profiling) return;
    profiling = true;
    session.post('Profiler.enable', () => {
      session.post('Profiler.setSamplingInterval', { interval: 500 }, () => {
        session.post('Profiler.start');
      });
    });
  });
  // Registered before the role's own handler, so it runs first: the profile ends where the
  // measurement ends and does not include the shutdown.
  process.on('SIGTERM', () => {
    if (!profiling) return;
    profiling = false;
    // The in-thread inspector session answers synchronously.
    session.post('Profiler.stop', (error, result) => {
      if (error === null && result?.profile !== undefined) writeFileSync(target, JSON.stringify(result.profile));
    });
  });
}
