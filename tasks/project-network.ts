// Owns: the project's own libvirt network, for machines in nat mode in a file of several, so
// they reach each other by name. One node for the project; a machine's domain waits for it.
import { digestOf } from '../src/graph/digest.js';
import { defineRule } from '../src/graph/rule.js';
import { macFor } from '../src/machine/machine.js';
import { ensureProjectNetwork, onProjectNetwork, projectDomain, projectNetworkUp, type NetworkState } from '../src/machine/network.js';
import type { RumCtx } from './context.js';

export const projectNetwork = defineRule<RumCtx, { network: string; domain: string; hosts: { name: string; mac: string }[] }, NetworkState>({
  id: 'project-network',
  kind: 'effect',
  version: 1,
  deps: [],
  applies: (c) => onProjectNetwork(c.project, c.config),
  shareKey: (c) => c.config.network.name,
  // Every machine of the file that uses it, not only those this run builds: adding one later
  // adds its reservation, and the others keep theirs.
  inputs: ({ project, config }) => ({
    network: config.network.name,
    domain: projectDomain(project),
    hosts: project.machines.filter((m) => onProjectNetwork(project, m)).map((m) => ({ name: m.machine, mac: macFor(m.name) })),
  }),
  verbs: { build: 'create', rebuild: 'update' },
  build: async ({ ctx, inputs, notice }) => {
    const state = await ensureProjectNetwork(ctx.machine.virsh, { name: inputs.network, domain: inputs.domain, hosts: inputs.hosts, configFile: ctx.project.file }, notice);
    return { digest: digestOf(JSON.stringify(state)), data: state };
  },
  check: async ({ ctx }) =>
    (await projectNetworkUp(ctx.machine.virsh, ctx.config.network.name)) ? { ok: true } : { ok: false, why: `libvirt network ${ctx.config.network.name} is not running` },
});
