// Owns: everything rum prints. Human output (colour on a TTY unless NO_COLOR), plain lines off a
// TTY, --json on stdout. Progress goes to stderr so stdout stays data.
import { homedir } from 'node:os';
import kleur from 'kleur';
import { formatDiagnostic } from '../config/frame.js';
import type { PinnedImage } from '../config/lock-file.js';
import { ConfigError, exitCodes, isRumError } from '../errors.js';
import type { PinChange } from '../machine/pinning.js';
import { asNoSpace } from '../files/space.js';
import { changing, describeReason, describeWarning, planChanges, type EngineWarning, type Outcome, type RunEvent } from '../graph/events.js';
import type { Plan, PlannedNode } from '../graph/plan.js';
import type { RunResult } from '../graph/execute.js';
import type { CheckStatus, DoctorReport } from '../host/doctor.js';
import { describeCacheNote, type CacheNote, type VmRef } from '../image/cache-notes.js';
import type { GcReport, ImageRow, ImagesReport, Removal } from '../image/gc.js';

export interface OutputOptions {
  json?: boolean;
}

/** Text read from files, tools or libvirt, shown on a terminal: control and bidi characters escaped. */
export function visible(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** visible() for text of several lines (an error and its hint): line breaks and tabs stay. */
function visibleLines(s: string): string {
  return s.split('\n').map((line) => line.split('\t').map(visible).join('\t')).join('\n');
}

const colorFor = (stream: NodeJS.WriteStream) =>
  !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb' && (stream.isTTY === true || 'FORCE_COLOR' in process.env);

export class Output {
  readonly json: boolean;
  readonly tty: boolean;
  private readonly k: typeof kleur;
  private readonly ek: typeof kleur;
  private spinner?: { timer: NodeJS.Timeout; text: string; frame: number };

  constructor(opts: OutputOptions = {}) {
    this.json = opts.json === true;
    this.tty = process.stderr.isTTY === true;
    // Two palettes: stdout may be piped while stderr is a terminal.
    this.k = kleurWith(colorFor(process.stdout));
    this.ek = kleurWith(colorFor(process.stderr));
  }

  out(text: string): void {
    this.clearSpinner();
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  info(text: string): void {
    this.clearSpinner();
    process.stderr.write(`${text}\n`);
  }

  notice(text: string): void {
    this.info(`${this.ek.yellow('note:')} ${text}`);
  }

  /** An engine warning, on stderr whatever the mode: --json keeps stdout for data, and carries
   * the same values in its `warnings`. The text holds a damaged file's keys: escaped. */
  warning(w: EngineWarning): void {
    this.info(`${this.ek.yellow('warning:')} ${visible(describeWarning(w))}`);
  }

  data(value: unknown): void {
    this.out(JSON.stringify(value, null, 2));
  }

  private lastPlain = { text: '', at: 0 };

  /** A spinner on a TTY; off a TTY, plain lines: each new stage at once, updates every 5 s. */
  waiting(text: string): void {
    if (!this.tty) {
      const stage = (t: string) => t.replace(/[\d.]+/g, '#'); // same words, new numbers: an update
      const now = Date.now();
      if (stage(text) !== stage(this.lastPlain.text) || now - this.lastPlain.at >= 5000) {
        process.stderr.write(`${text}\n`);
        this.lastPlain = { text, at: now };
      }
      return;
    }
    if (this.spinner?.timer) {
      this.spinner.text = text;
      return;
    }
    const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    const s = { text, frame: 0, timer: undefined as unknown as NodeJS.Timeout };
    s.timer = setInterval(() => {
      process.stderr.write(`\r\x1b[2K${this.ek.cyan(frames[s.frame++ % frames.length]!)} ${s.text}`);
    }, 80);
    s.timer.unref();
    this.spinner = s;
  }

  clearSpinner(): void {
    if (this.spinner?.timer) {
      clearInterval(this.spinner.timer);
      process.stderr.write('\r\x1b[2K');
    }
    this.spinner = undefined;
  }

  // ---- plans and runs ----

  /** `width`: of the id column; plans of several machines have longer ids. */
  nodeLine(n: PlannedNode, width = 16): string {
    const k = this.k;
    const state =
      n.state === 'fresh' ? k.green('fresh') : n.state === 'kept' ? k.yellow(n.action) : k.red(n.tentative ? 'stale?' : 'stale');
    const why = n.reason ? ` ${k.dim('—')} ${describeReason(n.reason)}${n.tentative ? ' (rebuilt only if that output changes)' : ''}` : '';
    const action = n.state === 'stale' ? ` ${k.bold(`→ ${n.action}`)}` : '';
    const note = n.note ? ` ${k.dim(`(${n.note})`)}` : '';
    return `${n.id.padEnd(width)} ${k.dim(n.rule.kind.padEnd(9))} ${state}${action}${why}${note}`;
  }

  plan(plan: Plan, vmName: string, hints: string[]): void {
    for (const w of plan.warnings ?? []) this.warning(w);
    if (this.json) return this.data(planJson(plan, vmName));
    const width = idWidth(plan);
    for (const n of plan.nodes) this.out(this.nodeLine(n, width));
    const work = changing(plan);
    this.out(work.length === 0 ? this.k.green('up to date: nothing to do') : `${work.length} of ${plan.nodes.length} nodes would change`);
    for (const h of hints) this.out(`${this.k.yellow('note:')} ${h}`);
  }

  event(e: RunEvent): void {
    if (e.type === 'warning') return this.warning(e.warning);
    if (this.json) return;
    const k = this.ek;
    switch (e.type) {
      case 'start':
        this.info(`${k.cyan('•')} ${e.node}: ${e.action}${e.reason ? k.dim(` (${describeReason(e.reason)})`) : ''}`);
        return;
      case 'progress':
        this.waiting(`${e.node}: ${e.message}`);
        return;
      case 'notice':
        this.notice(`${e.node}: ${e.message}`);
        return;
      case 'done':
        if (e.outcome.type === 'built' || e.outcome.type === 'cutoff')
          this.info(`${k.green('✓')} ${e.node} ${k.dim(`${e.outcome.ms} ms${e.outcome.type === 'cutoff' ? ', same output' : ''}`)}`);
        else if (e.outcome.type === 'failed') this.info(`${k.red('✗')} ${e.node}`);
        return;
    }
  }

  result(r: RunResult, vmName: string): void {
    if (this.json) return this.data(resultJson(r, vmName));
    const built = [...r.outcomes].filter(([, o]) => o.type === 'built' || o.type === 'cutoff');
    if (built.length === 0 && !r.failure) this.info(this.ek.green('up to date: nothing to do'));
  }

  /** `rum update`: each image's old and new pin. The JSON holds the pins whole. */
  pinChanges(r: { lock: string; changes: PinChange[]; written: boolean; dryRun: boolean }): void {
    if (this.json) return this.data({ lock: r.lock, written: r.written, images: r.changes });
    const k = this.k;
    const short = (d: string) => d.replace(/^(\w+:[0-9a-f]{16})[0-9a-f]+$/, '$1…');
    const line = (p: PinnedImage) => `${visible(p.url ?? '(local file)')}\n      ${short(p.digest)}, ${p.size} bytes, resolved ${p.resolved}`;
    for (const c of r.changes) {
      if (c.change === 'same') this.out(`${visible(c.image)}: ${k.green('unchanged')} ${k.dim(`(${visible(c.new!.url ?? short(c.new!.digest))})`)}`);
      else {
        this.out(`${visible(c.image)}: ${k.yellow(c.change)}`);
        if (c.old) this.out(`  ${k.red('-')} ${line(c.old)}`);
        if (c.new) this.out(`  ${k.green('+')} ${line(c.new)}`);
      }
    }
    if (r.changes.length === 0) this.out('rum.yaml names no base image to pin');
    const changed = r.changes.some((c) => c.change === 'changed');
    if (r.written) this.info(`${r.lock} written: commit it${changed ? '; an existing VM keeps its disk until `rum up --reset` (`rum up` says so)' : ''}`);
    else if (r.dryRun && r.changes.some((c) => c.change !== 'same')) this.info(`${r.lock} not written (--dry-run)`);
    else this.info(`${r.lock} is up to date`);
  }

  /** `rum doctor`: one line per check, ✓ / ! / ✗, and the fix after a dash. */
  doctor(r: DoctorReport): void {
    if (this.json) return this.data(r);
    const k = this.k;
    const mark: Record<CheckStatus, string> = { ok: k.green('✓'), warn: k.yellow('!'), fail: k.red('✗') };
    const width = Math.max(...r.checks.map((c) => c.id.length));
    for (const c of r.checks) this.out(`${mark[c.status]} ${c.id.padEnd(width)}  ${visible(c.summary)}${c.fix ? ` ${k.dim('—')} fix: ${visible(c.fix)}` : ''}`);
    const count = (s: CheckStatus) => r.checks.filter((c) => c.status === s).length;
    const [fails, warns] = [count('fail'), count('warn')];
    this.out(
      fails + warns === 0
        ? k.green('this host has what rum needs')
        : [fails ? k.red(`${fails} to fix`) : '', warns ? k.yellow(`${warns} to look at`) : ''].filter(Boolean).join(', '),
    );
  }

  /** Said once when a run waits for gc.lock: a gc, or another run registering its use. */
  readonly cacheWait = (h: { pid: number; command: string }): void => this.info(`waiting for rum ${visible(h.command)} (pid ${h.pid}) to finish with the image cache...`);

  /** `rum images`: each image, its size, where it came from and which VMs use it. */
  images(r: ImagesReport): void {
    if (this.json) return this.data({ cache: r.cache, images: r.images, notes: notesJson(r.notes) });
    const k = this.k;
    for (const i of r.images) {
      const name = i.kind === 'local' ? visible(homePath(i.path)) : shortKey(i.key ?? i.path);
      this.out(`${i.kind.padEnd(5)}  ${k.bold(name)}  ${i.bytes === null ? k.red('missing') : diskSize(i.bytes)}`);
      if (i.urls.length > 0) for (const u of i.urls) this.out(`       from ${visible(u)}`);
      if (i.kind === 'layer') {
        const on = i.base === null ? 'an unknown base' : (r.images.find((b) => b.kind === 'base' && b.path === i.base)?.key ?? visible(homePath(i.base)));
        this.out(`       packages: ${i.packages === null ? '?' : i.packages.length === 0 ? 'none' : visible(i.packages.join(', '))}; on ${shortKey(on)}`);
      }
      this.out(`       ${i.usedBy.length === 0 ? k.yellow('used by no VM') : `used by ${usersText(i.usedBy)}`}`);
    }
    const cached = r.images.filter((i) => i.kind !== 'local');
    const unused = cached.filter((i) => i.usedBy.length === 0);
    const total = (l: ImageRow[]) => diskSize(l.reduce((n, i) => n + (i.bytes ?? 0), 0));
    if (cached.length === 0) this.out(`no cached images (${visible(homePath(r.cache))})`);
    else
      this.out(
        `${cached.length} cached image${cached.length === 1 ? '' : 's'}, ${total(cached)}` +
          (unused.length > 0 ? `; ${unused.length} used by no VM (${total(unused)}): \`rum gc --dry-run\` shows what would go` : ''),
      );
    for (const n of r.notes) this.notice(visible(describeCacheNote(n)));
  }

  /** `rum gc`: what went (or would), and the space. */
  gc(r: GcReport): void {
    if (this.json) return this.data({ ...r, notes: notesJson(r.notes) });
    const verb = r.dryRun ? 'would remove' : 'removed';
    const shown = r.removed.filter((x) => x.kind !== 'by-url' && x.kind !== 'layer-meta');
    for (const x of shown) this.out(`${verb} ${removalText(x, r.cache)} (${diskSize(x.bytes)})`);
    const count = (kind: Removal['kind'], one: string, many: string) => {
      const n = r.removed.filter((x) => x.kind === kind).length;
      if (n > 0) this.out(`${verb} ${n} ${n === 1 ? one : many}`);
    };
    count('by-url', 'by-url entry (which URL gave an image)', 'by-url entries (which URL gave an image)');
    count('layer-meta', "layer's metadata", "layers' metadata");
    const kept = `${r.kept.length} image${r.kept.length === 1 ? '' : 's'} kept`;
    if (r.removed.length === 0) this.out(`nothing to remove; ${kept}`);
    else this.out(`${r.dryRun ? 'would free' : 'freed'} ${diskSize(r.bytes)}${r.dryRun ? ' (`rum gc` removes them)' : ''}; ${kept}`);
    for (const n of r.notes) this.notice(visible(describeCacheNote(n)));
  }

  /** Renders any error; returns the exit status. The only place a failure becomes text. */
  error(err: unknown): number {
    this.clearSpinner();
    err = asNoSpace(err, undefined); // wherever a full disk surfaced, it is not a bug
    const k = this.ek;
    if (err instanceof ConfigError) {
      if (this.json) this.data({ error: errorJson(err) });
      for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d, { color: colorFor(process.stderr) })}\n`);
      return exitCodes.CONFIG_INVALID;
    }
    if (isRumError(err)) {
      if (this.json) this.data({ error: errorJson(err) });
      // Messages quote files, tools and libvirt: nothing they hold may drive the terminal.
      process.stderr.write(`${k.red().bold('error:')} ${visibleLines(err.message)}\n`);
      if (err.hint) process.stderr.write(`${k.yellow('hint:')} ${visibleLines(err.hint)}\n`);
      return exitCodes[err.code];
    }
    process.stderr.write(`${k.red().bold('rum hit a bug:')} ${visibleLines((err as Error)?.message ?? String(err))}\n`);
    process.stderr.write(`${visibleLines((err as Error)?.stack ?? '')}\n`);
    process.stderr.write(`${k.yellow('hint:')} please report it with the command you ran and the lines above\n`);
    return exitCodes.BUG;
  }
}

/** The id column's width: 16, as it always was, or the longest id. */
export const idWidth = (plan: Plan): number => Math.max(16, ...plan.nodes.map((n) => n.id.length));

function kleurWith(enabled: boolean): typeof kleur {
  // kleur keeps one global switch; the palettes differ only in whether they colour.
  return new Proxy(kleur, {
    get: (target, prop) => {
      const v = (target as unknown as Record<string | symbol, unknown>)[prop];
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const before = target.enabled;
        target.enabled = enabled;
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          target.enabled = before;
        }
      };
    },
  }) as typeof kleur;
}

// ---- JSON shapes (documented in the README; stable) ----

/** Bytes as people read them: "1.5 GiB", "312 KiB". */
export function diskSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v >= 100 ? Math.round(v) : +v.toFixed(1)} ${units[i]}`;
}

/** A digest or key cut to what a person compares: "sha512:67b0c276fb5e…". */
const shortKey = (key: string) => visible(key.replace(/^((?:\w+:)?[0-9a-f]{16})[0-9a-f]{8,}$/, '$1…'));

/** A path under the home directory as `~/...`. */
export function homePath(p: string): string {
  const home = homedir();
  return home !== '/' && p.startsWith(`${home}/`) ? `~${p.slice(home.length)}` : p;
}

const usersText = (refs: VmRef[]) => refs.map((r) => `${r.vm}${r.config === null ? '' : ` (${visible(homePath(r.config))})`}`).join(', ');

function removalText(x: Removal, cache: string): string {
  const rel = x.path.startsWith(`${cache}/`) ? x.path.slice(cache.length + 1) : x.path;
  switch (x.kind) {
    case 'base':
    case 'layer':
      return `${x.kind} ${shortKey(x.key ?? rel)}`;
    case 'incoming':
      return `${visible(rel)}: a download left unfinished`;
    case 'build':
      return `${visible(rel)}/: a layer build left unfinished`;
    default:
      return visible(rel);
  }
}

const notesJson = (notes: CacheNote[]) => notes.map((n) => ({ ...n, text: describeCacheNote(n) }));

export function nodeJson(n: PlannedNode) {
  return {
    id: n.id,
    machine: n.machine,
    kind: n.rule.kind,
    deps: n.deps,
    state: n.state,
    action: n.action,
    reason: n.reason ?? null,
    reasonText: n.reason ? describeReason(n.reason) : null,
    tentative: n.tentative === true,
    output: n.output ?? null,
    ...(n.note ? { note: n.note } : {}),
  };
}

export function planJson(plan: Plan, vm: string) {
  return { vm, changes: planChanges(plan), nodes: plan.nodes.map(nodeJson), warnings: plan.warnings ?? [] };
}

/** Every error in --json, whether the command's or a node's: one shape. */
export function errorJson(err: unknown): { code: string; message: string; hint?: string; diagnostics?: ConfigError['diagnostics'] } {
  if (err instanceof ConfigError) return { code: err.code, message: err.message, diagnostics: err.diagnostics };
  if (isRumError(err)) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  return { code: 'BUG', message: (err as Error)?.message ?? String(err) };
}

function outcomeJson(o: Outcome) {
  return o.type === 'failed' ? { type: o.type, error: errorJson(o.error) } : o;
}

export function resultJson(r: RunResult, vm: string) {
  return {
    vm,
    ok: !r.failure && !r.interrupted,
    built: [...r.outcomes].filter(([, o]) => o.type === 'built' || o.type === 'cutoff').map(([id]) => id),
    outcomes: Object.fromEntries([...r.outcomes].map(([id, o]) => [id, outcomeJson(o)])),
    failure: r.failure ? { node: r.failure.node, ...errorJson(r.failure.error) } : null,
  };
}
