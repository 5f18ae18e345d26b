import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { ConfigError, QUEUE_ROLES, loadConfig } from '../../common/config/env.js';
import { parsePolicy } from '../../common/config/policy.js';
import { REPO_ROOT } from '../helpers/processes.js';

/**
 * Checks deploy/k8s/ without kubectl (not installed here): every YAML document parses; every
 * object is of a kind and apiVersion Kubernetes serves; kustomizations only name files that exist
 * inside their own folder (kustomize's default load restriction); every Deployment runs an entry
 * point that exists in source, with selectors matching its pod labels; every environment name is
 * one common/config/env.ts knows, and the environment each role gets passes loadConfig() in
 * production mode; every worker queue is served; the policy ConfigMap is a valid policy.
 */

const K8S = join(REPO_ROOT, 'deploy/k8s');
const BASE = join(K8S, 'base');
const OVERLAY = join(K8S, 'overlays/example');

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rec(value: unknown, what: string): Json {
  assert.ok(isRecord(value), `${what} must be a mapping`);
  return value;
}

function list(value: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(value), `${what} must be a list`);
  return value;
}

function str(value: unknown, what: string): string {
  assert.equal(typeof value, 'string', `${what} must be a string`);
  return value as string;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...yamlFiles(path));
    else if (/\.ya?ml$/.test(entry)) out.push(path);
  }
  return out.sort();
}

/** Every document of a file, parse errors and warnings refused. */
function documents(path: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  return docs.map((doc, i) => {
    assert.deepEqual(doc.errors.map((e) => e.message), [], `${relative(REPO_ROOT, path)} document ${i + 1}`);
    assert.deepEqual(doc.warnings.map((e) => e.message), [], `${relative(REPO_ROOT, path)} document ${i + 1}`);
    return doc.toJS() as unknown;
  });
}

/** The kinds this example may use, by the apiVersion every supported Kubernetes serves them under. */
const KNOWN_KINDS: Record<string, string> = {
  Deployment: 'apps/v1',
  Service: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  PodDisruptionBudget: 'policy/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
};

/** The variable names of env.ts's zod schema (`const envSchema = z.object({ NAME: … })`). */
function schemaVariables(): Set<string> {
  const source = readFileSync(join(REPO_ROOT, 'common/config/env.ts'), 'utf8');
  const start = source.indexOf('const envSchema = z.object({');
  assert.ok(start >= 0, 'envSchema not found in common/config/env.ts');
  const body = source.slice(start, source.indexOf('\n});', start));
  const names = new Set([...body.matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((match) => match[1] as string));
  assert.ok(names.has('REDIS_URL') && names.has('KURIR_SECRET') && names.size > 20, `parsed ${[...names].join(', ')}`);
  return names;
}

interface Kustomization {
  dir: string;
  doc: Json;
}

function kustomization(dir: string): Kustomization {
  const path = join(dir, 'kustomization.yaml');
  assert.ok(existsSync(path), `${relative(REPO_ROOT, dir)} has no kustomization.yaml`);
  const [doc] = documents(path);
  const k = rec(doc, relative(REPO_ROOT, path));
  assert.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  assert.equal(k.kind, 'Kustomization');
  return { dir, doc: k };
}

/** A path a kustomization names must stay inside its folder unless it is another kustomization. */
function inside(dir: string, file: string): string {
  const path = resolve(dir, file);
  assert.ok(!relative(dir, path).startsWith('..'), `${file} is outside ${relative(REPO_ROOT, dir)} (kustomize refuses to load it)`);
  assert.ok(existsSync(path), `${relative(REPO_ROOT, path)} does not exist`);
  return path;
}

/** The objects a kustomization renders (before transformers), and the files its generators read. */
function render(dir: string): { objects: Json[]; generatedConfigMaps: Map<string, Map<string, string>> } {
  const { doc } = kustomization(dir);
  const objects: Json[] = [];
  const generatedConfigMaps = new Map<string, Map<string, string>>();
  for (const entry of list(doc.resources ?? [], 'resources')) {
    const name = str(entry, 'resources entry');
    const path = resolve(dir, name);
    assert.ok(existsSync(path), `${relative(REPO_ROOT, dir)}: resource ${name} does not exist`);
    if (statSync(path).isDirectory()) {
      const below = render(path);
      objects.push(...below.objects);
      for (const [key, value] of below.generatedConfigMaps) generatedConfigMaps.set(key, value);
    } else {
      objects.push(...documents(inside(dir, name)).map((object, i) => rec(object, `${name} document ${i + 1}`)));
    }
  }
  for (const generator of list(doc.configMapGenerator ?? [], 'configMapGenerator')) {
    const g = rec(generator, 'configMapGenerator entry');
    const files = new Map<string, string>();
    for (const file of list(g.files ?? [], 'configMapGenerator files')) {
      const spec = str(file, 'configMapGenerator file');
      // `key=path` or `path` (the key is then the file name).
      const [key, path] = spec.includes('=') ? (spec.split('=', 2) as [string, string]) : [spec.split('/').pop() as string, spec];
      files.set(key, readFileSync(inside(dir, path), 'utf8'));
    }
    generatedConfigMaps.set(str(g.name, 'configMapGenerator name'), files);
  }
  return { objects, generatedConfigMaps };
}

const variables = schemaVariables();
const base = render(BASE);
const secretTemplate = rec(documents(join(BASE, 'secret.example.yaml'))[0], 'secret.example.yaml');

function byKind(kind: string): Json[] {
  return base.objects.filter((object) => object.kind === kind);
}

function named(kind: string, name: string): Json {
  const found = byKind(kind).find((object) => rec(object.metadata, `${kind} metadata`).name === name);
  assert.ok(found !== undefined, `no ${kind} named ${name}`);
  return found;
}

function nameOf(object: Json): string {
  return str(rec(object.metadata, 'metadata').name, 'metadata.name');
}

function podSpec(deployment: Json): Json {
  return rec(rec(rec(deployment.spec, 'spec').template, 'template').spec, 'template.spec');
}

function containers(deployment: Json): Json[] {
  return list(podSpec(deployment).containers, 'containers').map((c) => rec(c, 'container'));
}

function dataOf(object: Json): Record<string, string> {
  const data = { ...rec(object.data ?? {}, 'data'), ...rec(object.stringData ?? {}, 'stringData') };
  for (const [key, value] of Object.entries(data)) str(value, `${nameOf(object)}.${key}`);
  return data as Record<string, string>;
}

/** The environment one container gets: envFrom sources in order, then `env` on top (Kubernetes' precedence). */
function environmentOf(container: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of list(container.envFrom ?? [], 'envFrom')) {
    const s = rec(source, 'envFrom entry');
    if (s.configMapRef !== undefined) Object.assign(env, dataOf(named('ConfigMap', str(rec(s.configMapRef, 'configMapRef').name, 'configMapRef.name'))));
    else if (s.secretRef !== undefined) {
      assert.equal(rec(s.secretRef, 'secretRef').name, nameOf(secretTemplate), 'envFrom names the Secret of secret.example.yaml');
      Object.assign(env, dataOf(secretTemplate));
    } else assert.fail('envFrom entries are configMapRef or secretRef');
  }
  for (const entry of list(container.env ?? [], 'env')) {
    const e = rec(entry, 'env entry');
    env[str(e.name, 'env name')] = str(e.value, `env ${String(e.name)} value`);
  }
  return env;
}

describe('deploy/k8s (kustomize), checked without kubectl', () => {
  test('every YAML document parses; every object has a kind and apiVersion Kubernetes serves', () => {
    const files = yamlFiles(K8S);
    assert.ok(files.length >= 9, `found ${files.length} YAML files`);
    const policyCopies = new Set([join(BASE, 'policy.yaml')]);
    for (const file of files) {
      const docs = documents(file);
      if (file.endsWith('kustomization.yaml') || policyCopies.has(file)) continue;
      for (const [i, doc] of docs.entries()) {
        const object = rec(doc, `${relative(REPO_ROOT, file)} document ${i + 1}`);
        const kind = str(object.kind, 'kind');
        assert.ok(kind in KNOWN_KINDS, `${relative(REPO_ROOT, file)}: unexpected kind ${kind}`);
        assert.equal(object.apiVersion, KNOWN_KINDS[kind], `${relative(REPO_ROOT, file)}: ${kind} apiVersion`);
        assert.match(nameOf(object), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'names are DNS labels');
      }
    }
  });

  test('the base has one Deployment per role, the Service, PDB and HPA of the API, and the config', () => {
    assert.deepEqual(
      byKind('Deployment').map(nameOf).sort(),
      ['kurir-api', 'kurir-scheduler', 'kurir-worker-receipts', 'kurir-worker-sms-email', 'kurir-worker-whatsapp'],
    );
    assert.deepEqual(byKind('Service').map(nameOf), ['kurir-api']);
    assert.deepEqual(byKind('PodDisruptionBudget').map(nameOf), ['kurir-api']);
    assert.deepEqual(byKind('HorizontalPodAutoscaler').map(nameOf), ['kurir-api']);
    assert.deepEqual(byKind('ConfigMap').map(nameOf), ['kurir-config']);
    assert.deepEqual(byKind('Secret'), [], 'real secrets never come from the kustomization (secret.example.yaml is a template)');
    assert.deepEqual([...base.generatedConfigMaps.keys()], ['kurir-policy']);
    assert.equal(secretTemplate.kind, 'Secret');
    assert.match(readFileSync(join(BASE, 'secret.example.yaml'), 'utf8'), /sealed-secrets/);
    assert.match(readFileSync(join(BASE, 'secret.example.yaml'), 'utf8'), /external-secrets/);
    assert.equal(named('Deployment', 'kurir-scheduler').spec !== undefined && rec(named('Deployment', 'kurir-scheduler').spec, 'spec').replicas, 2);
  });

  test('every Deployment runs an entry point that exists, with matching selectors and the shared hardening', () => {
    for (const deployment of byKind('Deployment')) {
      const name = nameOf(deployment);
      const spec = rec(deployment.spec, `${name}.spec`);
      const selector = rec(rec(spec.selector, 'selector').matchLabels, 'matchLabels');
      const labels = rec(rec(rec(spec.template, 'template').metadata, 'template.metadata').labels, 'template labels');
      for (const [key, value] of Object.entries(selector)) assert.equal(labels[key], value, `${name}: selector ${key} must match the pod labels`);
      const pod = podSpec(deployment);
      assert.equal(pod.terminationGracePeriodSeconds, 30, `${name}: grace period`);
      assert.equal(pod.automountServiceAccountToken, false, `${name}: no API token in the pod`);
      const podSecurity = rec(pod.securityContext, `${name}: pod securityContext`);
      assert.equal(podSecurity.runAsNonRoot, true, `${name}: runAsNonRoot`);
      assert.ok(Number(podSecurity.runAsUser) > 0, `${name}: runAsUser`);
      const [container, ...others] = containers(deployment);
      assert.ok(container !== undefined && others.length === 0, `${name}: one container`);
      const command = list(container.command, `${name}: command`).map((part) => str(part, 'command part'));
      assert.equal(command[0], 'node', `${name}: runs node`);
      const entry = /^dist\/((?:[a-z-]+\/)?main)\.js$/.exec(command[1] ?? '');
      assert.ok(entry?.[1] !== undefined && command.length === 2, `${name}: command ${JSON.stringify(command)} is not node dist/<role>/main.js`);
      assert.ok(existsSync(join(REPO_ROOT, `${entry[1]}.ts`)), `${name}: ${entry[1]}.ts does not exist (the Dockerfile builds dist/ from it)`);
      assert.equal(container.image, 'kurir', `${name}: the image the overlay retags`);
      const security = rec(container.securityContext, `${name}: container securityContext`);
      assert.equal(security.readOnlyRootFilesystem, true, `${name}: read-only root FS`);
      assert.equal(security.allowPrivilegeEscalation, false, `${name}: no privilege escalation`);
      assert.deepEqual(rec(security.capabilities, 'capabilities').drop, ['ALL'], `${name}: capabilities dropped`);
      const resources = rec(container.resources, `${name}: resources`);
      for (const part of ['requests', 'limits']) {
        const r = rec(resources[part], `${name}: resources.${part}`);
        assert.ok(r.cpu !== undefined && r.memory !== undefined, `${name}: ${part} for cpu and memory`);
      }
      // The policy file the config names is where the generated ConfigMap is mounted.
      const env = environmentOf(container);
      const policyFile = env.KURIR_POLICY_FILE ?? '';
      const mount = list(container.volumeMounts, 'volumeMounts').map((m) => rec(m, 'mount')).find((m) => policyFile.startsWith(`${String(m.mountPath)}/`));
      assert.ok(mount !== undefined, `${name}: KURIR_POLICY_FILE ${policyFile} is in no mounted volume`);
      const volume = list(pod.volumes, 'volumes').map((v) => rec(v, 'volume')).find((v) => v.name === mount.name);
      const configMap = rec(rec(volume, 'policy volume').configMap, 'policy volume configMap');
      const files = base.generatedConfigMaps.get(str(configMap.name, 'configMap name'));
      assert.ok(files?.has(policyFile.slice(String(mount.mountPath).length + 1)), `${name}: ${policyFile} is not a key of ${String(configMap.name)}`);
      if (command[1] !== 'dist/api/main.js') assert.equal(container.ports, undefined, `${name}: only the API listens`);
    }
  });

  test('every environment name is a variable env.ts knows, and each role’s environment passes loadConfig in production', () => {
    const names = new Set([...Object.keys(dataOf(named('ConfigMap', 'kurir-config'))), ...Object.keys(dataOf(secretTemplate))]);
    for (const deployment of byKind('Deployment')) {
      for (const container of containers(deployment)) {
        for (const entry of list(container.env ?? [], 'env')) names.add(str(rec(entry, 'env').name, 'env name'));
      }
    }
    const unknown = [...names].filter((name) => !variables.has(name));
    assert.deepEqual(unknown, [], 'names common/config/env.ts does not read');

    for (const deployment of byKind('Deployment')) {
      const env = environmentOf(containers(deployment)[0] as Json);
      assert.equal(env.NODE_ENV, 'production');
      assert.equal(env.KURIR_PROVIDER, 'ycloud');
      assert.equal(env.LOG_FORMAT, 'json');
      let config;
      try {
        config = loadConfig(env);
      } catch (error) {
        assert.fail(`${nameOf(deployment)}: ${error instanceof Error ? error.message : String(error)}`);
      }
      assert.equal(config.production, true);
      assert.deepEqual(config.developmentDefaults, [], `${nameOf(deployment)} relies on development defaults`);
      assert.ok(config.adminToken !== undefined);
      assert.equal(config.redis.topology.kind, 'sentinel', 'the example uses Sentinel');
      // Every variable loadConfig requires in production is provided: dropping any one of them fails.
      for (const required of ['KURIR_SECRET', 'KURIR_API_KEYS', 'YCLOUD_API_KEY', 'YCLOUD_WEBHOOK_SECRET', 'YCLOUD_WHATSAPP_FROM', 'YCLOUD_EMAIL_FROM']) {
        const { [required]: _dropped, ...rest } = env;
        assert.throws(() => loadConfig(rest), ConfigError, `${required} should be required in production`);
      }
    }
  });

  test('every worker queue is served by a Deployment; the API and scheduler are split out', () => {
    const served = new Map<string, string>();
    for (const deployment of byKind('Deployment')) {
      const container = containers(deployment)[0] as Json;
      if (list(container.command, 'command')[1] !== 'dist/worker/main.js') continue;
      const config = loadConfig(environmentOf(container));
      assert.ok(config.worker.queues.length < QUEUE_ROLES.length, `${nameOf(deployment)} must name its queues (WORKER_QUEUES)`);
      for (const queue of config.worker.queues) {
        assert.equal(served.get(queue), undefined, `${queue} is served by two Deployments`);
        served.set(queue, nameOf(deployment));
      }
    }
    assert.deepEqual([...served.keys()].sort(), [...QUEUE_ROLES].sort(), 'queues without a worker Deployment');
    assert.equal(served.get('send-whatsapp'), 'kurir-worker-whatsapp');
  });

  test('the API: probes, Service, PodDisruptionBudget and HorizontalPodAutoscaler fit its pods', () => {
    const api = named('Deployment', 'kurir-api');
    const container = containers(api)[0] as Json;
    const ports = list(container.ports, 'ports').map((p) => rec(p, 'port'));
    assert.deepEqual(ports.map((p) => [p.name, p.containerPort]), [['http', 3000]]);
    assert.equal(environmentOf(container).PORT, '3000', 'PORT matches the container port');
    const readiness = rec(rec(container.readinessProbe, 'readinessProbe').httpGet, 'readiness httpGet');
    const liveness = rec(rec(container.livenessProbe, 'livenessProbe').httpGet, 'liveness httpGet');
    assert.deepEqual([readiness.path, readiness.port], ['/readyz', 'http']);
    assert.deepEqual([liveness.path, liveness.port], ['/healthz', 'http']);
    const labels = rec(rec(rec(rec(api.spec, 'spec').template, 'template').metadata, 'metadata').labels, 'labels');
    const matches = (selector: unknown) => Object.entries(rec(selector, 'selector')).every(([key, value]) => labels[key] === value);

    const service = rec(named('Service', 'kurir-api').spec, 'service spec');
    assert.ok(matches(service.selector), 'the Service selects the API pods');
    assert.deepEqual(list(service.ports, 'service ports').map((p) => rec(p, 'port').targetPort), ['http']);

    const pdb = rec(named('PodDisruptionBudget', 'kurir-api').spec, 'pdb spec');
    assert.ok(matches(rec(pdb.selector, 'pdb selector').matchLabels), 'the PDB selects the API pods');
    assert.ok(pdb.maxUnavailable !== undefined || pdb.minAvailable !== undefined);

    const hpa = rec(named('HorizontalPodAutoscaler', 'kurir-api').spec, 'hpa spec');
    assert.deepEqual(hpa.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'kurir-api' });
    assert.ok(Number(hpa.minReplicas) >= 3 && Number(hpa.maxReplicas) > Number(hpa.minReplicas));
    const cpu = list(hpa.metrics, 'hpa metrics').map((m) => rec(m, 'metric')).find((m) => rec(m.resource ?? {}, 'resource').name === 'cpu');
    assert.ok(cpu !== undefined, 'the HPA scales on CPU');
    assert.ok(rec(rec(container.resources, 'resources').requests, 'requests').cpu !== undefined, 'CPU utilisation needs a CPU request');
    assert.equal(rec(api.spec, 'spec').replicas, undefined, 'the HPA owns the replica count');
  });

  test('the policy ConfigMap is a valid policy, identical to policy/kurir.policy.example.yaml', () => {
    const text = base.generatedConfigMaps.get('kurir-policy')?.get('policy.yaml');
    assert.ok(text !== undefined);
    assert.doesNotThrow(() => parsePolicy(parseYaml(text), 'deploy/k8s/base/policy.yaml'));
    assert.equal(
      text,
      readFileSync(join(REPO_ROOT, 'policy/kurir.policy.example.yaml'), 'utf8'),
      'deploy/k8s/base/policy.yaml drifted: cp policy/kurir.policy.example.yaml deploy/k8s/base/policy.yaml',
    );
  });

  test('the example overlay builds on the base and retags the image', () => {
    const overlay = kustomization(OVERLAY);
    const resources = list(overlay.doc.resources, 'overlay resources');
    assert.ok(resources.includes('../../base'));
    assert.ok(existsSync(join(dirname(join(OVERLAY, 'kustomization.yaml')), '../../base/kustomization.yaml')));
    const images = list(overlay.doc.images, 'overlay images').map((image) => rec(image, 'image'));
    const kurir = images.find((image) => image.name === 'kurir');
    assert.ok(kurir !== undefined, 'the overlay retags the image named "kurir"');
    assert.match(str(kurir.newTag, 'newTag'), /^[\w][\w.-]{0,127}$/, 'a valid image tag');
    assert.equal(render(OVERLAY).objects.length, base.objects.length);
  });
});
