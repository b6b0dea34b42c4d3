// Owns: the libvirt domain definition for this VM, from rum.yaml's resources, network, mounts
// and ports. Written with an escaping XML builder; marked as rum's with the owning rum.yaml.
import { writeAtomic } from '../src/files/atomic.js';
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { isSessionUri } from '../src/config/rules.js';
import { keepsOwners } from '../src/host/qemu-reach.js';
import { fileExists } from './checks.js';
import { baseImage } from './base-image.js';
import type { RumCtx } from './context.js';
import { sshPort } from './ssh-port.js';
import { resolveMounts } from '../src/mounts/resolve.js';
import { overlay } from './overlay.js';
import type { BackingFile } from '../src/libvirt/domain-xml.js';

/**
 * The files under the disk, nearest first, as the disk's own headers say (snapshot layers, a
 * provisioned layer, the base image): what the XML names when the files keep their owner. Read
 * from the disk, never derived from rum.yaml: a disk kept on an older layer, or adopted, sits on
 * what it was made on. None while there is no disk (assessed again once the overlay is made).
 */
async function chainInput(c: RumCtx): Promise<{ 'disk.chain'?: BackingFile[] }> {
  const { backingFiles } = await import('../src/image/qemu-img.js');
  const files = await backingFiles(c.vm.path('overlay')).catch(() => undefined);
  return files && files.length > 1 ? { 'disk.chain': files.slice(1).map((f) => ({ path: f.path, format: f.format === 'raw' ? 'raw' : 'qcow2' })) } : {};
}

export const domainXml = defineRule({
  id: 'domain-xml',
  kind: 'derived',
  version: 5, // 3: QEMU runs as the user under qemu:///system; 4: only root's, else libvirt's QEMU user; 5: keepOwners
  deps: [sshPort, baseImage],
  // Order only: a run that makes a new disk (--reset: a new layer, no snapshots) changes the
  // chain this reads; assessed after it, the definition names the chain the new disk has.
  after: [overlay],
  inputs: async (c: RumCtx) => {
    const { config } = c;
    const t = await c.machine.domainType();
    return {
      name: config.name,
      'resources.cpus': config.resources.cpus,
      'resources.memory': config.resources.memory,
      'libvirt.domain_type': t.type,
      'libvirt.machine': config.libvirt.machine,
      network: { mode: config.network.mode, name: config.network.name },
      mounts: resolveMounts(config, c.env).map(({ why: _, ...m }) => m),
      ports: config.ports,
      owner: config.file,
      runAs: c.machine.qemuRunsAs(),
      keepOwners: keepsOwners(config.libvirt.uri, c.env),
      // Named in the XML only when the files keep their owner; a snapshot or a reset changes it.
      ...(keepsOwners(config.libvirt.uri, c.env) ? await chainInput(c) : {}),
    };
  },
  output: ({ vm }) => vm.path('domainXml'),
  build: async ({ ctx, inputs: i, upstream, notice }) => {
    const [{ domainXml: render }, { domainUuid }] = await Promise.all([import('../src/libvirt/domain-xml.js'), import('../src/libvirt/domain-uuid.js')]);
    const t = await ctx.machine.domainType();
    if (ctx.config.libvirt.domain_type === 'auto' && t.why) notice(`KVM is not usable here (${t.why}): using TCG emulation, which is slower`);
    for (const m of resolveMounts(ctx.config, ctx.env)) {
      if (m.why) notice(`mount ${m.target} uses 9p: ${m.why}`);
      if (m.type === 'virtiofs' && m.readonly) notice(`mount ${m.target}: read-only inside the guest only (virtiofs); type: 9p enforces it on the host`);
      if (m.type === '9p' && !m.readonly && !i.runAs && !isSessionUri(ctx.config.libvirt.uri))
        notice(`mount ${m.target}: 9p under qemu:///system writes as libvirt's QEMU user, which may not write into your directory, and what it writes is not yours; use virtiofs (type: auto) for a share the guest writes`);
    }
    if (!i.keepOwners && !i.runAs && !isSessionUri(ctx.config.libvirt.uri))
      notice("no setfacl here (package acl): libvirt hands the VM's disk files to its QEMU user, and keeps the seed and the base image in your home as that user's");
    const { port } = upstream(sshPort).data;
    const base = upstream(baseImage).data;
    const mac = ctx.machine.mac;
    const spec = {
      name: i.name,
      uuid: domainUuid(i.owner, i.name), // from inputs already keyed: node:crypto only when building
      title: `rum: ${ctx.config.file}`,
      memoryBytes: i['resources.memory'],
      cpus: i['resources.cpus'],
      domainType: i['libvirt.domain_type'],
      machine: i['libvirt.machine'],
      overlayPath: ctx.vm.path('overlay'),
      overlayFormat: 'qcow2',
      seedIsoPath: ctx.vm.path('seedIso'),
      consoleLogPath: ctx.vm.path('console'),
      network:
        i.network.mode === 'user'
          ? { mode: 'user', sshPort: port, forwards: i.ports, mac }
          : { mode: 'nat', network: i.network.name, mac },
      mounts: i.mounts.map((m) => ({
        type: m.type,
        source: m.source,
        tag: m.tag,
        // An explicit read-only virtiofs mount is read-only in the guest's fstab only (libvirt < 11).
        readonly: m.readonly && m.type === '9p',
        // passthrough needs a root QEMU to set the guest's owners (see runAs); any other QEMU
        // squashes: passthrough that ignores chown, so files belong to QEMU's user.
        ...(m.type === '9p' ? { accessmode: i.runAs ? 'passthrough' : 'squash' } : {}),
      })),
      owner: { configFile: ctx.config.file, vmDir: ctx.vm.dir },
      ...(i.runAs ? { runAs: i.runAs } : {}),
    } as Parameters<typeof render>[0];
    const chain: BackingFile[] = i['disk.chain'] ?? [{ path: base.path, format: base.format as 'qcow2' | 'raw' }];
    const xml = render({ ...spec, ...(i.keepOwners ? { keepOwners: { chain } } : {}) });
    await writeAtomic(ctx.vm.path('domainXml'), xml);
    // The identity the running guest depends on leaves the snapshot layers out: a snapshot of a
    // running guest moves the chain under it, and must not make it need a restart. The defined
    // domain follows the layers itself (tasks/defined-domain.ts). What they sit on (the
    // provisioned layer, the base) is in it: a reset onto another layer redefines the domain.
    const snapshotLayers = `${ctx.vm.path('layers')}/`;
    const under = chain.filter((f) => !f.path.startsWith(snapshotLayers));
    return { digest: digestOf(i.keepOwners ? render({ ...spec, keepOwners: { chain: under } }) : xml) };
  },
  check: ({ ctx: { vm } }) => fileExists(vm.path('domainXml')),
});
