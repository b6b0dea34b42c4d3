// `rum status`: the domain's state, address, uptime, resources, mounts and ports, whether the
// running domain matches its definition, and every graph node fresh or stale with its reason.
// From the state record and one round of libvirt queries; works when there is no VM at all.
import { describeReason } from '../../graph/events.js';
import type { Plan } from '../../graph/plan.js';
import { Output, nodeJson } from '../output.js';
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
  const domainState = !o.exists || running?.reason?.type === 'missing' && !state.get('defined-domain')
    ? 'absent'
    : running?.state === 'fresh' || running?.action === 'kept-needs-restart'
      ? 'running'
      : running?.reason?.type === 'check-failed' ? running.reason.why.replace(/^the domain is /, '') : 'unknown';
  const startedAt = state.get('running-domain')?.time;
  const uptimeSeconds = domainState === 'running' && startedAt ? (Date.now() - Date.parse(startedAt)) / 1000 : null;
  const ssh = (state.output('ssh-ready')?.data as { host: string; port: number } | undefined) ?? null;
  const { resolveMounts } = await import('../../../tasks/mounts.js');
  const mounts = resolveMounts(c).map((m) => ({ source: m.source, target: m.target, type: m.type, readonly: m.readonly, ...(m.why ? { why: m.why } : {}) }));
  const definitionCurrent = running?.action !== 'kept-needs-restart';
  const data = {
    vm: c.name,
    config: c.file,
    uri: c.libvirt.uri,
    dir: vm.dir,
    state: domainState,
    uptimeSeconds,
    ssh: ssh && { ...ssh, user: c.ssh.user },
    resources: { cpus: c.resources.cpus, memoryBytes: c.resources.memory, diskBytes: c.resources.disk },
    network: { mode: c.network.mode, ...(c.network.mode === 'nat' ? { name: c.network.name } : {}) },
    mounts,
    ports: c.ports,
    definitionCurrent,
    nodes: plan.nodes.map(nodeJson),
  };
  const out = new Output(opts);
  if (opts.json) {
    out.data(data);
    return 0;
  }
  render(out, data, plan);
  return 0;
}

function render(out: Output, d: { [k: string]: any }, plan: Plan): void {
  if (d.state === 'absent') {
    out.out(`VM ${d.vm}: not created yet (\`rum up\` creates it)`);
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
  if (stale.length > 0) out.out(`${stale.length} node(s) not up to date: \`rum up\` ${stale.some((n) => n.reason && describeReason(n.reason)) ? 'rebuilds them' : ''}`.trimEnd());
}
