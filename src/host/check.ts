// Owns: what a host check is (its id, a verdict, one line of summary and one fix) and what every
// check is handed (the libvirt URI and network to look at). Knows nothing of rum.yaml or output.

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** Every check `rum doctor` runs, in the order it reports them. Hints elsewhere name these ids. */
export const CHECK_IDS = [
  'kvm',
  'libvirt',
  'group',
  'network',
  'home-access',
  'security',
  'virtiofsd',
  'qemu',
  'qemu-img',
  'ssh',
  'disk',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

/** A verdict: `fix` is a command for the user to run (rum never runs it). */
export interface Finding {
  status: CheckStatus;
  summary: string;
  fix?: string;
}

export interface CheckResult extends Finding {
  id: CheckId;
}

/** What the checks look at. */
export interface DoctorTarget {
  uri: string;
  /** Where the URI came from, said in the libvirt line: "URI from /p/rum.yaml", "URI: the default, ...". */
  uriFrom: string;
  /** nat: this libvirt network must be up; user: no libvirt network is used. */
  network: { mode: 'nat' | 'user'; name: string };
  env: NodeJS.ProcessEnv;
}

const RANK: Record<CheckStatus, number> = { ok: 0, warn: 1, fail: 2 };

export function worst(statuses: CheckStatus[]): CheckStatus {
  return statuses.reduce<CheckStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), 'ok');
}

/** Several findings of one check as one line: the worst status, summaries and fixes joined. */
export function combine(parts: Finding[]): Finding {
  const fixes = parts.map((p) => p.fix).filter((f): f is string => f !== undefined);
  return {
    status: worst(parts.map((p) => p.status)),
    summary: parts.map((p) => p.summary).join('; '),
    ...(fixes.length > 0 ? { fix: fixes.join('; ') } : {}),
  };
}

/** "~/.cache/rum" for a path under the home directory, else the path. */
export function tildeFor(path: string, home: string): string {
  return home.length > 1 && (path === home || path.startsWith(`${home}/`)) ? `~${path.slice(home.length)}` : path;
}

/** Ends the hint of an error a host problem causes, naming the doctor check that looks at it. */
export function seeDoctor(id: CheckId): string {
  return `; \`rum doctor\` checks this host (${id})`;
}
