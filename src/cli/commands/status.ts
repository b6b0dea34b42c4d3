// `rum status`: the domain's state, address, uptime, resources, mounts and ports, whether the
// running domain matches its definition, and every graph node fresh or stale with its reason.
// From the state record and one round of libvirt queries; works when there is no VM at all (and
// then says whether a domain of its name, not rum's or another project's, is there already).
import { changing } from '../../graph/events.js';
import type { Plan } from '../../graph/plan.js';
import type { Machine } from '../../machine/machine.js';
import { chainNames, describeChain, noteLayers, readSnapshots } from '../../machine/snapshots.js';
import { resolveMounts } from '../../mounts/resolve.js';
import { idWidth, Output, nodeJson, visible } from '../output.js';
import { planFor, type CommonOptions } from './common.js';

const gib = (b: number) => `${+(b / 2 ** 30).toFixed(2)} GiB`;
function duration(s: number): string {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
}

export async function status(opts: CommonOptions): Promise<number> {
  const { o, machines, plan } = await planFor(opts, {}, [], { mountSources: false }); // the plan's own state records: read once; it reports, it mounts nothing
  await noteLayers(plan, machines);
  const all = await Promise.all(machines.map((m) => machineStatus(m, plan)));
  const warnings = plan.warnings ?? [];
  const out = new Output(opts);
  for (const w of warnings) out.warning(w);
  if (opts.json) {
    const nodes = plan.nodes.map(nodeJson);
    out.data(o.project.single ? { ...all[0]!.data, nodes, warnings } : { project: o.project.name, config: o.project.file, machines: all.map((a) => a.data), nodes, warnings });
    return 0;
  }
  for (const a of all) render(out, a.data, a.defined);
  out.out('nodes:');
  for (const n of plan.nodes) out.out(`  ${out.nodeLine(n, idWidth(plan))}`);
  const stale = changing(plan);
  if (stale.length > 0 && all.some((a) => a.data.state === 'foreign')) out.out(`${stale.length} node(s) not up to date: \`rum up\` refuses to run while a domain that is not this project's has a machine's name`);
  else if (stale.length > 0) out.out(`${stale.length} node(s) not up to date: \`rum up\` rebuilds them`);
  return 0;
}

async function machineStatus(m: Machine, plan: Plan) {
  const c = m.config;
  const running = plan.nodes.find((n) => n.rule.id === 'running-domain' && n.machine === m.name)!;
  const state = running.node.primary.state;
  // libvirt is asked whatever the record says: the domain may be there without one (another
  // project's, one rum did not make, this VM's own after its record was lost). A plan on a
  // defined VM asked already; the answer is shared. Unreachable, it is an error (exit 4), never
  // a guess.
  const [facts, owner] = await Promise.all([m.domainFacts(), m.owner()]);
  const domainState = owner.owner === 'absent' ? 'absent' : owner.owner === 'other' ? 'foreign' : (facts.state ?? 'absent');
  const foreign = owner.owner === 'other' ? { project: owner.project ?? null, state: facts.state ?? 'unknown', ...m.notOurs(owner.project) } : null;
  const startedAt = state.get('running-domain')?.time;
  const uptimeSeconds = domainState === 'running' && startedAt ? (Date.now() - Date.parse(startedAt)) / 1000 : null;
  // The record is the engine's, not this command's: what ssh-ready left must be an address.
  const a = state.output('ssh-ready')?.data as { host?: unknown; port?: unknown } | undefined;
  const ssh = a && typeof a.host === 'string' && typeof a.port === 'number' && Number.isInteger(a.port) ? { host: a.host, port: a.port } : null;
  const layers = await readSnapshots(m.vm).catch(() => ({ snapshots: [], disk: { on: null } }));
  const mounts = resolveMounts(c).map((x) => ({ source: x.source, target: x.target, type: x.type, readonly: x.readonly, ...(x.why ? { why: x.why } : {}) }));
  const data = {
    vm: c.name,
    machine: m.name,
    config: c.file,
    uri: c.libvirt.uri,
    dir: m.vm.dir,
    state: domainState,
    foreign,
    uptimeSeconds,
    ssh: ssh && { ...ssh, user: c.ssh.user },
    resources: { cpus: c.resources.cpus, memoryBytes: c.resources.memory, diskBytes: c.resources.disk },
    network: { mode: c.network.mode, ...(c.network.mode === 'nat' ? { name: c.network.name } : {}) },
    mounts,
    ports: c.ports,
    after: c.after,
    disk: { path: m.vm.path('overlay'), on: chainNames(layers), snapshots: layers.snapshots.map((s) => s.name), note: describeChain(layers) ?? null },
    definitionCurrent: running.action !== 'kept-needs-restart',
  };
  return { data, defined: state.get('defined-domain') !== undefined };
}

function render(out: Output, d: { [k: string]: any }, defined: boolean): void {
  if (d.state === 'absent') {
    out.out(defined ? `VM ${d.vm}: its libvirt domain is gone from ${d.uri} (\`rum up\` defines it again)` : `VM ${d.vm}: not created yet (\`rum up\` creates it)`);
  } else if (d.state === 'foreign') {
    // Its owner's name comes from that domain's own XML: anyone's bytes.
    out.out(`VM ${d.vm}: not created: ${visible(d.foreign.message)}; it is ${d.foreign.state}, and \`rum up\` will not touch it`);
    out.out(`  hint        ${d.foreign.hint}`);
  } else {
    out.out(`VM ${d.vm} (${d.uri}): ${d.state}${d.uptimeSeconds !== null ? `, up ${duration(d.uptimeSeconds)}` : ''}`);
    if (d.ssh) out.out(`  ssh         ${d.ssh.user}@${d.ssh.host}:${d.ssh.port}  (rum ssh)`);
  }
  out.out(`  resources   ${d.resources.cpus} cpus, ${gib(d.resources.memoryBytes)} memory, ${gib(d.resources.diskBytes)} disk`);
  out.out(`  network     ${d.network.mode}${d.network.name ? ` (libvirt network ${d.network.name})` : ''}`);
  for (const m of d.mounts) out.out(`  mount       ${m.target} <- ${m.source} (${m.type}${m.readonly ? ', read-only' : ''}${m.why ? `: ${m.why}` : ''})`);
  for (const p of d.ports) out.out(`  port        ${p.bind}:${p.host} -> ${p.guest}/${p.proto}`);
  if (d.state === 'running') out.out(`  definition  ${d.definitionCurrent ? 'current' : 'changed since start: `rum up --restart` applies it'}`);
  if (d.disk.note) out.out(`  disk        ${d.disk.note} (rum snapshot list)`);
  if (d.after.length > 0) out.out(`  after       ${d.after.join(', ')} (starts once they answer over SSH)`);
}
