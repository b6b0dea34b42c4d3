// `rum status`: the domain's state, address, uptime, resources, mounts and ports, whether the
// running domain matches its definition, and every graph node fresh or stale with its reason.
// From the state record and one round of libvirt queries; works when there is no VM at all (and
// then says whether a domain of its name, not rum's or another project's, is there already).
import { describeReason } from '../../graph/events.js';
import type { Plan } from '../../graph/plan.js';
import { ctxFor } from '../../vm.js';
import { Output, nodeJson, visible } from '../output.js';
import { planFor, type CommonOptions } from './common.js';

const gib = (b: number) => `${+(b / 2 ** 30).toFixed(2)} GiB`;
function duration(s: number): string {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
}

export async function status(opts: CommonOptions): Promise<number> {
  const { o, plan, state } = await planFor(opts, {}); // the plan's own state record: read once
  const { config: c, vm } = o;
  const node = (id: string) => plan.nodes.find((n) => n.id === id);
  const running = node('running-domain');
  // libvirt is asked whatever the record says: the domain may be there without one (another
  // project's, one rum did not make, this VM's own after its record was lost). A plan on a
  // defined VM asked already; the answer is shared. Unreachable, it is an error (exit 4), never
  // a guess.
  const [{ domainFacts }, { domainOwner, notOurs }] = await Promise.all([import('../../../tasks/context.js'), import('../../../tasks/defined-domain.js')]);
  const ctx = ctxFor(o);
  const [facts, owner] = await Promise.all([domainFacts(ctx), domainOwner(ctx)]);
  const domainState = owner.owner === 'absent' ? 'absent' : owner.owner === 'other' ? 'foreign' : (facts.state ?? 'absent');
  const foreign = owner.owner === 'other' ? { project: owner.project ?? null, state: facts.state ?? 'unknown', ...notOurs(ctx, owner.project) } : null;
  const startedAt = state.get('running-domain')?.time;
  const uptimeSeconds = domainState === 'running' && startedAt ? (Date.now() - Date.parse(startedAt)) / 1000 : null;
  // The record is the engine's, not this command's: what ssh-ready left must be an address.
  const a = state.output('ssh-ready')?.data;
  const ssh = a && typeof a.host === 'string' && typeof a.port === 'number' && Number.isInteger(a.port) ? { host: a.host, port: a.port } : null;
  const { resolveMounts } = await import('../../../tasks/mounts.js');
  const mounts = resolveMounts(c).map((m) => ({ source: m.source, target: m.target, type: m.type, readonly: m.readonly, ...(m.why ? { why: m.why } : {}) }));
  const definitionCurrent = running?.action !== 'kept-needs-restart';
  const data = {
    vm: c.name,
    config: c.file,
    uri: c.libvirt.uri,
    dir: vm.dir,
    state: domainState,
    foreign,
    uptimeSeconds,
    ssh: ssh && { ...ssh, user: c.ssh.user },
    resources: { cpus: c.resources.cpus, memoryBytes: c.resources.memory, diskBytes: c.resources.disk },
    network: { mode: c.network.mode, ...(c.network.mode === 'nat' ? { name: c.network.name } : {}) },
    mounts,
    ports: c.ports,
    definitionCurrent,
    nodes: plan.nodes.map(nodeJson),
    warnings: plan.warnings ?? [],
  };
  const out = new Output(opts);
  for (const w of data.warnings) out.warning(w);
  if (opts.json) {
    out.data(data);
    return 0;
  }
  render(out, data, plan, state.get('defined-domain') !== undefined);
  return 0;
}

function render(out: Output, d: { [k: string]: any }, plan: Plan, defined: boolean): void {
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
  out.out('nodes:');
  for (const n of plan.nodes) out.out(`  ${out.nodeLine(n)}`);
  const stale = plan.nodes.filter((n) => n.action !== 'none');
  if (stale.length > 0 && d.state === 'foreign') out.out(`${stale.length} node(s) not up to date: \`rum up\` refuses to run while that domain has this VM's name`);
  else if (stale.length > 0) out.out(`${stale.length} node(s) not up to date: \`rum up\` ${stale.some((n) => n.reason && describeReason(n.reason)) ? 'rebuilds them' : ''}`.trimEnd());
}
