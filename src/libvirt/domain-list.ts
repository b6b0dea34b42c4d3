// Owns: the state and title of a set of domains on one libvirt URI, in one question whatever
// their number (what `rum list` asks once per URI): over the local daemon's socket when it can
// be reached that way (src/libvirt/rpc.ts, ~1 ms), else one `virsh list` (~15-20 ms a process).
// Never throws: a URI that cannot be asked is a value, with virsh's reason and a hint.
import { spawn } from 'node:child_process';
import { shellQuote } from '../ssh/openssh.js';
import { rpcSnapshots } from './rpc.js';

export interface ListedDomain {
  name: string;
  /** virsh's word ('running', 'shut off', 'paused', ...); 'unknown' for a word it did not know. */
  state: string;
  /** The domain's <title> ('' when it has none): rum writes `rum: <its rum.yaml>` there. */
  title: string;
}

export type DomainListing =
  | { ok: true; domains: Map<string, ListedDomain> }
  | { ok: false; message: string; hint: string | undefined };

// virshDomainStateToString's words, 'saved' (shown with --managed-save), and rum's 'suspended'.
const STATES = ['running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended', 'no state', 'saved', 'suspended'];

/** The socket's word; a managed save is `suspended`, as `rum status` says. */
const listState = (state: string | undefined): string =>
  state === 'shut off (saved)' ? 'suspended' : state !== undefined && STATES.includes(state) ? state : 'unknown';

/**
 * `names` on `uri`: those the daemon knows are in the map (a virsh listing holds every domain).
 * Through virsh: `virsh --connect URI list --all --title` with LC_ALL=C.UTF-8, not C: its
 * messages are the same untranslated English that classifyVirshFailure matches, but under C
 * virsh prints each byte of a non-ASCII title as `\xff` (measured with virsh 9.0), so the title
 * of a project under ~/Données could not be compared. Where C.UTF-8 is missing, virsh falls
 * back to C: see titleNames.
 */
export async function listDomains(
  uri: string,
  names: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; euid?: number } = {},
): Promise<DomainListing> {
  const env = { ...process.env, ...opts.env };
  // RUM_LIBVIRT_RPC=0: virsh only, as for Virsh.domainSnapshot.
  const snaps = env.RUM_LIBVIRT_RPC === '0' ? undefined : await rpcSnapshots(uri, names, { env, euid: opts.euid });
  if (snaps)
    return { ok: true, domains: new Map([...snaps].map(([name, s]) => [name, { name, state: listState(s.state), title: xmlTitle(s.inactiveXml ?? '') }])) };
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const r = await runVirsh(['--connect', uri, 'list', '--all', '--title'], { ...env, LC_ALL: 'C.UTF-8' }, timeoutMs);
  if ('missing' in r) return { ok: false, message: 'virsh is not installed (not found on PATH)', hint: 'apt install libvirt-clients' };
  if (r.timedOut)
    return { ok: false, message: `virsh list did not answer within ${timeoutMs / 1000} s`, hint: `is the libvirt daemon stuck? try: virsh --connect ${shellQuote(uri)} list --all` };
  if (r.status !== 0) {
    // Only a failure pays for loading virsh's message table.
    const { classifyVirshFailure, lastMeaningfulLine } = await import('./virsh.js');
    return {
      ok: false,
      message: `virsh list: ${lastMeaningfulLine(r.stderr) ?? `exited with ${r.status ?? r.signal}`}`,
      hint: classifyVirshFailure(r.stderr, uri, r.signal).hint,
    };
  }
  return { ok: true, domains: new Map(parseDomainList(r.stdout).map((d) => [d.name, d])) };
}

/**
 * The rows of `virsh list --all [--title]`. Cells are cut at the header's column starts: virsh
 * pads every cell to its column, so a name or a state with a space in it ('shut off', a foreign
 * domain called 'web running') stays whole. A row that does not line up with the header (a name
 * with wide characters, which virsh pads by display width; an old virsh's printf table with a
 * name longer than its column) is read by words instead: Id, a one-word name, then a state.
 * rum's own names are DNS labels, so their rows always line up.
 */
export function parseDomainList(stdout: string): ListedDomain[] {
  const lines = stdout.split('\n');
  const headerAt = lines.findIndex((l) => /^\s*Id\s+Name\s+State\b/.test(l));
  if (headerAt < 0) return [];
  const header = lines[headerAt]!;
  const nameAt = header.indexOf('Name');
  const stateAt = header.indexOf('State');
  const titleAt = header.indexOf('Title'); // -1 without --title
  const rows = lines.slice(headerAt + 1).filter((l) => l.trim() !== '' && !/^-+$/.test(l.trim()));
  return rows.flatMap((row) => {
    const d = byColumns(row, nameAt, stateAt, titleAt) ?? byWords(row);
    return d ? [d] : [];
  });
}

function byColumns(row: string, nameAt: number, stateAt: number, titleAt: number): ListedDomain | undefined {
  const startsCell = (at: number) => at <= 0 || at >= row.length || (row[at - 1] === ' ' && row[at] !== ' ');
  if (!startsCell(nameAt) || !startsCell(stateAt) || (titleAt > 0 && row.length > titleAt && !startsCell(titleAt))) return undefined;
  const name = row.slice(nameAt, stateAt).trim();
  const state = row.slice(stateAt, titleAt > 0 ? titleAt : undefined).trim();
  // Cells are at least two spaces apart: a wider gap inside one means the row is shifted.
  if (name === '' || state === '' || /\s{2}/.test(name) || /\s{2}/.test(state)) return undefined;
  return { name, state: STATES.includes(state) ? state : 'unknown', title: titleAt > 0 ? row.slice(titleAt).trim() : '' };
}

function byWords(row: string): ListedDomain | undefined {
  const m = /^\s*\S+\s+(\S+)\s+(.*)$/.exec(row);
  if (!m) return undefined;
  const rest = m[2]!;
  const state = STATES.find((s) => rest === s || rest.startsWith(`${s} `));
  return { name: m[1]!, state: state ?? 'unknown', title: state ? rest.slice(state.length).trim() : '' };
}

/** The domain's <title>, as `virsh list --title` prints it ('' when it has none). */
export function xmlTitle(xml: string): string {
  const m = /<title>([^<]*)<\/title>/.exec(xml);
  if (!m) return '';
  const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };
  return m[1]!.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, e: string) => {
    if (e[0] !== '#') return named[e] ?? all;
    const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
  });
}

/**
 * Whether a title `virsh list` printed says `rum: <configFile>`. Under a C locale virsh prints
 * each byte outside printable ASCII as `\xNN` (and not always the right NN), so there each
 * such character matches any run of escapes, and the rest must be exact.
 */
export function titleNames(title: string, configFile: string): boolean {
  const want = `rum: ${configFile}`;
  if (title === want) return true;
  if (!title.includes('\\x')) return false;
  const pattern = [...want].map((ch) => (/[\x20-\x7e]/.test(ch) ? ch.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&') : '(?:\\\\x[0-9a-f]{2})+')).join('');
  return new RegExp(`^${pattern}$`).test(title);
}

/** One virsh process, its output collected; killed after `timeoutMs`. */
function runVirsh(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean } | { missing: Error }> {
  return new Promise((resolve) => {
    const child = spawn('virsh', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT') resolve({ missing: e });
      else resolve({ status: null, signal: null, stdout: '', stderr: e.message, timedOut });
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
  });
}
