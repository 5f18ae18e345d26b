import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './processes.js';

/**
 * Reads a V8 `.cpuprofile` and names where the time went: self time per function and per
 * package (a node_modules package, a Kurir directory, node's internals, GC, idle).
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  file: string;
  seconds: number;
  /** Seconds not idle. */
  busySeconds: number;
  topFunctions: { name: string; where: string; selfMs: number; share: number }[];
  byPackage: { name: string; selfMs: number; share: number }[];
  /** Time with the package (or Kurir file) anywhere on the stack: what calling into it costs. */
  inclusive: { name: string; ms: number; share: number }[];
}

function where(url: string): string {
  if (url === '') return '';
  let path = url;
  if (url.startsWith('file://')) path = fileURLToPath(url);
  if (path.startsWith(REPO_ROOT)) return relative(REPO_ROOT, path);
  return path;
}

function packageOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (url === '') {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(program)') return '(program)';
    return '(native)';
  }
  if (url.startsWith('node:internal/deps/')) return `node:${url.slice('node:internal/deps/'.length).split('/')[0] ?? ''} (bundled)`;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
  const path = where(url);
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const parts = path.slice(modules + 'node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? '?');
  }
  // Kurir's own code, by directory (api/, common/store/, worker/, …).
  const parts = path.split('/');
  return parts.length > 2 && parts[0] === 'common' ? `kurir:${parts[0]}/${parts[1]}` : `kurir:${parts[0] ?? path}`;
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Each sample's time is the delta to the next sample.
  for (let i = 0; i < samples.length; i += 1) {
    const id = samples[i] as number;
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  // Inclusive time: every sample counts once for each package / Kurir file on its stack.
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const labelsOf = new Map<number, Set<string>>();
  const stackLabels = (id: number): Set<string> => {
    const cached = labelsOf.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id);
    const up = parent.get(id);
    const labels = new Set(up === undefined ? [] : stackLabels(up));
    if (node !== undefined && node.callFrame.url !== '') {
      labels.add(packageOf(node));
      const file = where(node.callFrame.url);
      if (!file.includes('node_modules/') && !file.startsWith('node:') && !file.startsWith('/')) labels.add(file);
    }
    labelsOf.set(id, labels);
    return labels;
  };
  const inclusiveUs = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (byId.get(id)?.callFrame.functionName === '(idle)') continue;
    for (const label of stackLabels(id)) inclusiveUs.set(label, (inclusiveUs.get(label) ?? 0) + us);
  }
  const byFunction = new Map<string, { name: string; where: string; us: number }>();
  const byPackage = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    total += us;
    const pkg = packageOf(node);
    if (pkg === '(idle)') idle += us;
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
    const name = node.callFrame.functionName === '' ? '(anonymous)' : node.callFrame.functionName;
    const at = `${where(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
    const key = `${name}@${at}`;
    const entry = byFunction.get(key) ?? { name, where: at, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
  }
  const busy = total - idle;
  const share = (us: number) => Math.round((us / Math.max(1, busy)) * 1000) / 10;
  return {
    file,
    seconds: total / 1e6,
    busySeconds: busy / 1e6,
    topFunctions: [...byFunction.values()]
      .filter((f) => f.name !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, selfMs: Math.round(f.us / 1000), share: share(f.us) })),
    inclusive: [...inclusiveUs.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 40)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), share: share(us) })),
    byPackage: [...byPackage.entries()]
      .filter(([name]) => name !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: Math.round(us / 1000), share: share(us) })),
  };
}
