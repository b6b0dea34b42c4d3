// Owns: the graph drawn for people and tools: a text tree, Graphviz dot, Mermaid. Pure strings.
import { describeReason } from './events.js';
import type { Plan, PlannedNode } from './plan.js';

function label(n: PlannedNode): string {
  return n.note ? `${state(n)} (${n.note})` : state(n);
}

function state(n: PlannedNode): string {
  if (n.state === 'fresh') return 'fresh';
  const why = n.reason ? `: ${describeReason(n.reason)}${n.tentative ? ' (rebuilt only if that output changes)' : ''}` : '';
  return n.state === 'kept' ? `${n.action}${why}` : `stale → ${n.action}${why}`;
}

/** The DAG as a tree from its final nodes down; a node met again is shown once, then referred to. */
export function textTree(plan: Plan): string {
  const byId = new Map(plan.nodes.map((n) => [n.id, n]));
  const hasDependents = new Set(plan.edges.map(([from]) => from));
  const roots = plan.nodes.filter((n) => !hasDependents.has(n.id)).reverse();
  const seen = new Set<string>();
  const lines: string[] = [];
  const walk = (n: PlannedNode, prefix: string, last: boolean, top: boolean) => {
    const branch = top ? '' : last ? '└─ ' : '├─ ';
    if (seen.has(n.id)) {
      lines.push(`${prefix}${branch}${n.id} (see above)`);
      return;
    }
    seen.add(n.id);
    lines.push(`${prefix}${branch}${n.id} [${n.rule.kind}] ${label(n)}`);
    const childPrefix = top ? prefix : prefix + (last ? '   ' : '│  ');
    n.deps.forEach((d, i) => walk(byId.get(d)!, childPrefix, i === n.deps.length - 1, false));
  };
  roots.forEach((r) => walk(r, '', true, true));
  return lines.join('\n');
}

const dotId = (s: string) => JSON.stringify(s); // ids are rule names: JSON string quoting is valid dot

/** A machine's own nodes (`web/overlay`) by machine; shared ones (the base image) under ''. */
function byMachine(plan: Plan): Map<string, PlannedNode[]> {
  const groups = new Map<string, PlannedNode[]>();
  for (const n of plan.nodes) {
    const m = n.id.includes('/') ? n.id.slice(0, n.id.indexOf('/')) : '';
    groups.set(m, [...(groups.get(m) ?? []), n]);
  }
  return groups;
}

export function dot(plan: Plan): string {
  const color = (n: PlannedNode) => (n.state === 'fresh' ? 'darkgreen' : n.state === 'kept' ? 'orange' : 'red');
  const line = (n: PlannedNode, indent: string) => `${indent}${dotId(n.id)} [label=${dotId(`${n.id}\n${n.rule.kind}: ${label(n)}`)}, color=${color(n)}];`;
  const nodes = [...byMachine(plan)].flatMap(([m, ns]) =>
    m === '' ? ns.map((n) => line(n, '  ')) : [`  subgraph ${dotId(`cluster_${m}`)} {`, `    label=${dotId(m)};`, ...ns.map((n) => line(n, '    ')), '  }'],
  );
  const edges = plan.edges.map(([a, b]) => `  ${dotId(a)} -> ${dotId(b)};`);
  return `digraph rum {\n  rankdir=LR;\n  node [shape=box];\n${[...nodes, ...edges].join('\n')}\n}`;
}

export function mermaid(plan: Plan): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_]/g, '_');
  const text = (s: string) => s.replace(/["<>]/g, "'");
  const line = (n: PlannedNode, indent: string) => `${indent}${safe(n.id)}["${text(`${n.id}: ${label(n)}`)}"]:::${n.state}`;
  const nodes = [...byMachine(plan)].flatMap(([m, ns]) =>
    m === '' ? ns.map((n) => line(n, '  ')) : [`  subgraph ${safe(`machine_${m}`)}["${text(m)}"]`, ...ns.map((n) => line(n, '    ')), '  end'],
  );
  const edges = plan.edges.map(([a, b]) => `  ${safe(a)} --> ${safe(b)}`);
  const classes = [
    '  classDef fresh stroke:#2a2',
    '  classDef stale stroke:#d22',
    '  classDef kept stroke:#e90',
    '  classDef pending stroke:#888',
  ];
  return ['graph LR', ...nodes, ...edges, ...classes].join('\n');
}
