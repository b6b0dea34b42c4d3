// Owns: building a provisioned layer: a throwaway guest on a disk over the base image boots
// the builder's seed, installs and seals (src/cloudinit/layer-build.ts), powers off; its disk
// is checked and taken into the cache. One build per key per cache at a time (the key's lock);
// a killed build leaves only its build directory and, at worst, a guest the next build of the
// key in that cache stops first. Not: when a layer is needed (tasks/layer.ts).
import { readFile, rm, mkdir, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RumError } from '../errors.js';
import { writeAtomic } from '../files/atomic.js';
import { pollUntil } from '../files/wait.js';
import type { ImageFormat } from '../image/qemu-img.js';
import { layerKey, LayerStore, type CachedLayer, type LayerInputs } from '../image/layer-store.js';
import type { Plan } from '../graph/plan.js';
import { digestOf } from '../graph/digest.js';
import { macFor, type Machine } from './machine.js';

/** The builder's disk: the base image's size and this much more for packages. A VM's disk is
 * never smaller than its layer. Changing it changes the layers made: bump LAYER_RECIPE. */
const HEADROOM = 2 ** 30;
/** Bounds the wait for a build: a guest that hangs is stopped and its console shown. */
const BUILD_TIMEOUT_MS = 60 * 60_000;
/** A guest that has not started the build script by then never will (no cloud-init, a seed it
 * did not read): said then, not after the hour. */
const START_TIMEOUT_MS = 10 * 60_000;

export interface LayerRequest {
  key: string;
  base: { path: string; format: ImageFormat; virtualSize: number; digest: string };
  inputs: Omit<LayerInputs, 'base' | 'basePath'>;
  /** Whose libvirt, network and resources the builder uses. */
  machine: Machine;
  progress(message: string): void;
  notice(message: string): void;
  signal: AbortSignal;
}

/** Its domain's name (and MAC): per key and per cache, so that two users' or two caches'
 * builds of one key on one libvirt never meet. */
export const builderName = (key: string, buildDir: string) => `rum-layer-${key}-${digestOf(buildDir).slice(0, 8)}`;

/** The cached layer for the key, built first when the cache has none. */
export async function ensureLayer(req: LayerRequest, store = new LayerStore()): Promise<CachedLayer & { built: boolean }> {
  const hit = await store.lookup(req.key);
  if (hit) return { ...hit, built: false };
  const lock = await store.lock(req.key, { signal: req.signal, onWait: () => req.progress('waiting for another rum building the same layer') });
  try {
    const now = await store.lookup(req.key); // built by that other rum meanwhile
    if (now) return { ...now, built: false };
    return { ...(await build(req, store)), built: true };
  } finally {
    await lock.release();
  }
}

async function build(req: LayerRequest, store: LayerStore): Promise<CachedLayer> {
  const { key, base, machine: m } = req;
  const dir = store.buildDir(key);
  const name = builderName(key, dir);
  const file = (f: string) => join(dir, f);
  // Under the key's lock: what is here or running under this name is a killed build's.
  await stopBuilder(m, name, dir);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  try {
    req.progress('writing the builder\'s disk and seed');
    const [{ createOverlay, check }, { buildIso }, { layerMetaData, layerUserData, buildOutcome, consoleExcerpt, currentStep }, { domainXml }] = await Promise.all([
      import('../image/qemu-img.js'),
      import('../iso/iso9660.js'),
      import('../cloudinit/layer-build.js'),
      import('../libvirt/domain-xml.js'),
    ]);
    await createOverlay(file('disk.qcow2'), { backing: base.path, backingFormat: base.format, sizeBytes: base.virtualSize + HEADROOM });
    const iso = buildIso({ volumeId: 'cidata', files: [{ name: 'meta-data', data: Buffer.from(layerMetaData(key)) }, { name: 'user-data', data: Buffer.from(layerUserData(req.inputs)) }] });
    await writeAtomic(file('seed.iso'), iso);

    const { keepsOwners } = await import('../host/qemu-reach.js');
    const keep = keepsOwners(m.config.libvirt.uri, m.env);
    const runAs = m.qemuRunsAs();
    const c = m.config;
    const mac = macFor(name);
    const xml = domainXml({
      name,
      title: `rum: layer builder for ${c.file}`,
      memoryBytes: c.resources.memory,
      cpus: c.resources.cpus,
      domainType: (await m.domainType()).type,
      machine: c.libvirt.machine,
      overlayPath: file('disk.qcow2'),
      overlayFormat: 'qcow2',
      seedIsoPath: file('seed.iso'),
      consoleLogPath: file('console.log'),
      network: c.network.mode === 'user' ? { mode: 'user', forwards: [], mac } : { mode: 'nat', network: c.network.name, mac },
      mounts: [],
      owner: { configFile: c.file, vmDir: dir },
      ...(runAs ? { runAs } : {}),
      ...(keep ? { keepOwners: { chain: [{ path: base.path, format: base.format as 'qcow2' | 'raw' }] } } : {}),
    });
    await writeAtomic(file('domain.xml'), xml);

    req.progress('booting the builder');
    const files = [{ path: file('disk.qcow2'), write: true }, { path: file('seed.iso'), write: false }];
    await m.startTransient({ xml: file('domain.xml'), console: file('console.log'), files }, req.notice);
    const readConsole = () => readFile(file('console.log'), 'utf8').catch(() => '');
    let said = '';
    const started = performance.now();
    const off = await pollUntil(
      async (): Promise<'off' | 'silent' | false> => {
        if ((await m.virsh.domainState(name)) === undefined) return 'off';
        const step = currentStep(await readConsole()) ?? 'booting';
        if (step === 'booting' && performance.now() - started > START_TIMEOUT_MS) return 'silent';
        if (step !== said) req.progress(`builder: ${(said = step)}`); // a line per step, not per look
        return false;
      },
      { everyMs: 2000, timeoutMs: BUILD_TIMEOUT_MS, maxTries: BUILD_TIMEOUT_MS / 1000, signal: req.signal },
    );
    const consoleText = await readConsole();
    if (req.signal.aborted) throw new RumError('INTERRUPTED', 'interrupted while building the layer: nothing was kept', 'run the command again to build it');
    const outcome =
      off === 'off'
        ? buildOutcome(consoleText)
        : { ok: false as const, why: off === 'silent' ? `the builder did not start its build script in ${START_TIMEOUT_MS / 60_000} min (is image.base a cloud image with cloud-init?)` : `the builder did not finish in ${BUILD_TIMEOUT_MS / 60_000} min` };
    if (!outcome.ok) {
      // Kept beside the layers: the build directory goes, the reason must not.
      const log = join(store.dir, `${key}.failed.log`);
      await copyFile(file('console.log'), log).catch(() => undefined);
      const tail = consoleExcerpt(consoleText);
      throw new RumError(
        'FAILED',
        `building the provisioned layer failed: ${outcome.why}; no layer was kept. The builder's console ended:\n${tail}`,
        `its whole console: ${log}; fix provision.packages / provision.image (or apt_sources) in rum.yaml and run \`rum up\` again`,
      );
    }
    req.progress('checking the layer');
    const sound = await check(file('disk.qcow2'), 'qcow2');
    if (!sound.ok) throw new RumError('IMAGE', `the builder's disk is not sound: ${sound.message}`, 'run `rum up` again to build it afresh');
    await rm(join(store.dir, `${key}.failed.log`), { force: true });
    return await store.commit(file('disk.qcow2'), {
      key,
      base: { path: base.path, digest: base.digest },
      packages: [...req.inputs.packages],
      ...(req.inputs.aptSources ? { aptSources: [...req.inputs.aptSources] } : {}),
      ...(req.inputs.script !== undefined ? { script: req.inputs.script } : {}),
      virtualSize: base.virtualSize + HEADROOM,
    });
  } finally {
    await stopBuilder(m, name, dir);
    await rm(dir, { recursive: true, force: true });
  }
}

/** A builder still running (a failed wait, a killed rum) is pulled: it is throwaway. Only one
 * whose mark names this build's directory. */
async function stopBuilder(m: Machine, name: string, dir: string): Promise<void> {
  const xml = await m.virsh.dumpxml(name);
  if (xml === undefined) return;
  const { readOwnerMark } = await import('../libvirt/domain-xml.js');
  if (readOwnerMark(xml)?.vmDir === dir) await m.virsh.destroy(name);
}

/** The layer node's inputs as the builder takes them, and their key on this base. */
export function layerRequest(i: LayerNodeInputs, base: { digest: string; path: string }): { key: string; inputs: LayerRequest['inputs'] } {
  const inputs = { packages: i['provision.packages'], aptSources: i['provision.apt_sources'], script: i['provision.image'] };
  return { key: layerKey({ base: base.digest, basePath: base.path, ...inputs }), inputs };
}

type LayerNodeInputs = { 'provision.packages': string[]; 'provision.apt_sources'?: string[]; 'provision.image'?: string };

/** For a plan that would build a layer: whether its key is in the cache already ("cached": no
 * builder boots) or not. A base image not fetched yet leaves the key unknown. */
export async function noteLayerCache(plan: Plan, store = new LayerStore()): Promise<void> {
  const pending = plan.nodes.some((n) => n.action !== 'none' && n.rule.id === 'base-image');
  for (const n of plan.nodes) {
    if (n.rule.id !== 'layer' || n.action === 'none' || !n.inputs) continue;
    const rec = n.node.primary.state.get('base-image');
    const base = rec?.output;
    const basePath = (rec?.data as { path?: unknown } | undefined)?.path;
    if (!base || typeof basePath !== 'string' || pending) {
      n.note = 'key known once the base image is fetched';
      continue;
    }
    const { key } = layerRequest(n.inputs as LayerNodeInputs, { digest: base, path: basePath });
    n.note = (await store.lookup(key)) ? `cached: ${key}` : `key ${key} not in cache: a builder VM installs it`;
  }
}
