// Owns: reading rum.yaml into a Project: parsing it with positions, running the checks (the YAML
// itself first, then each VM's schema and rules, the machines' structure and what they share),
// resolving defaults, and failing with every problem found, each at its line. Not: the checks
// themselves (yaml-checks.ts, issues.ts, rules.ts, machines.ts, clashes.ts), where a path is in the
// text (source.ts), or printing (frame.ts, through the CLI). Commands import it lazily, only when
// the config cache (cache.ts) has no entry: the yaml parser and zod load behind it.
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { isMap, LineCounter, parseDocument } from 'yaml';
import { ConfigError, type Diagnostic } from '../errors.js';
import { clashes, type PlacedMachine } from './clashes.js';
import { readConfig } from './find.js';
export { CONFIG_FILE, findConfig } from './find.js';
import { issueMessage, issueProblems, pathText } from './issues.js';
import { afterAtTop, inherit, isSettings, machineBlocks, NO_IMAGE_HINT, originOf, SaidOnce } from './machines.js';
import { checkRules, isSessionUri, type ConfigPath, type Locate, type Problem } from './rules.js';
import { RumYamlSchema, type Config, type Project } from './schema.js';
import { keyText, Source } from './source.js';
import { aliasBomb, collectionKeys, duplicateKeys, MAX_ALIASES, syntaxProblems, unknownAliases } from './yaml-checks.js';

/**
 * Read, parse and check rum.yaml, and resolve its defaults. Throws ConfigError with every problem
 * found (syntax first: when the YAML itself is broken, nothing else in it can be trusted).
 */
export async function loadProject(opts: { file?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Project> {
  const { file, text } = await readConfig(opts);
  return parseProject(text, file, opts.env ?? process.env);
}

/**
 * The VM name a directory gives when rum.yaml sets none: a DNS label, or undefined when nothing
 * usable remains (`___`, `/`).
 */
export function vmNameFromDir(dirName: string): string | undefined {
  const label = dirName
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // café -> cafe
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return label === '' ? undefined : label;
}

/** `mountSources: false`: a missing mount source is no error, for commands that never mount
 * (destroy, down, status): a deleted directory must not keep a user from their VM. */
export async function parseProject(text: string, file: string, env: NodeJS.ProcessEnv, opts: { mountSources?: boolean } = {}): Promise<Project> {
  const mountSources = opts.mountSources !== false;
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: false, // we draw our own frame, from the position
    logLevel: 'error', // no console.warn from inside the library
  });
  const src = new Source(file, text, doc, lines);

  // Broken YAML: its structure is a guess, so schema messages about it would mislead.
  const syntax = syntaxProblems(src);
  if (syntax.length > 0) throw new ConfigError(sorted(syntax));

  // Well-formed YAML with problems of its own: reported along with the schema's.
  // Those that leave no sensible object to check stop here.
  const structure = duplicateKeys(src);
  const unusable = [...collectionKeys(src), ...unknownAliases(src)];
  if (unusable.length > 0) throw new ConfigError(sorted([...structure, ...unusable]));
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    if (!(err instanceof ReferenceError && /alias/i.test(err.message))) throw err;
    throw new ConfigError(sorted([...structure, aliasBomb(src)]));
  }

  const dir = dirname(file);
  const problems = [...structure];
  const top = (p: Problem) => src.diagnostic(src.locate(p.path, p.part), p.message, p.hint);
  const multi = isSettings(data) && Object.hasOwn(data, 'machines');
  if (isSettings(data) && Object.hasOwn(data, 'after')) {
    problems.push(top(afterAtTop(multi)));
    const { after: _, ...rest } = data;
    data = rest;
  }
  if (!isSettings(data) || !multi) {
    // One VM, named like the project: the file as it was before machines.
    const vm = await checkVm(data, { dir, env, src, locate: src.locate, mountSources });
    if (vm.config?.name === '') problems.push(unnamed(file, dir));
    problems.push(...vm.problems.map(top));
    if (problems.length > 0 || !vm.config) throw new ConfigError(sorted(problems));
    return { name: vm.config.name, file, dir, single: true, machines: [vm.config] };
  }

  const { name: given, machines: declared, ...defaults } = data;
  const named = RumYamlSchema.pick({ name: true }).safeParse({ name: given }, { reportInput: true, error: issueMessage });
  if (!named.success) problems.push(...named.error.issues.flatMap(issueProblems).map(top));
  const name = named.success ? (named.data.name ?? vmNameFromDir(basename(dir))) : undefined;
  if (named.success && name === undefined) problems.push(unnamed(file, dir));
  const { blocks, problems: structural } = machineBlocks(declared, machineOrder(src));
  problems.push(...structural.map(top));

  const machines: Config[] = [];
  const placed: PlacedMachine[] = []; // those that loaded, for the checks across machines
  const found = new SaidOnce();
  for (const block of blocks) {
    if (block.own === undefined) continue;
    const own = block.own;
    const origin = (path: ConfigPath) => originOf(path, defaults, own, block.name);
    const locate: Locate = (path, part) => {
      const o = origin(path);
      return src.locate(o.path, o.part ?? part);
    };
    const vmName = name === undefined ? undefined : `${name}-${block.name}`;
    if (vmName !== undefined && vmName.length > 63)
      problems.push(top({ path: ['machines', block.name], part: 'key', message: `VM name ${vmName} is ${vmName.length} characters: a DNS label holds at most 63`,
        hint: `the VM name is <project>-<machine>: shorten the machine's name, or the project's (name: at the top level)` }));
    const settings = inherit(defaults, own);
    const vm = await checkVm(settings, { dir, env, src, locate, name: vmName ?? '', hostname: block.name, machine: block.name, mountSources });
    for (const p of vm.problems) {
      const o = origin(p.path);
      const hint = o.part === 'key' && p.path[0] === 'image' ? NO_IMAGE_HINT : p.hint; // at the machine's key: neither has one
      found.add(top({ ...p, path: o.path, part: o.part ?? p.part, ...(hint === undefined ? {} : { hint }) }), o.inherited ? block.name : undefined);
    }
    if (!vm.config) continue;
    const config = { ...vm.config, machine: block.name, after: block.after };
    machines.push(config);
    placed.push({ config, origin, hostnameSet: isSettings(settings.network) && settings.network.hostname != null });
  }
  for (const c of clashes(placed, (path) => src.locate(path).line)) found.add(top(c.problem), c.inheritedBy);
  problems.push(...found.diagnostics());
  if (problems.length > 0 || name === undefined) throw new ConfigError(sorted(problems));
  return { name, file, dir, single: false, machines };
}

/** One VM's settings, checked: the schema's problems, else the resolved config and the rules'
 * problems. Paths are into `data`; `locate` only gives the lines that messages mention. */
async function checkVm(
  data: unknown,
  at: { dir: string; env: NodeJS.ProcessEnv; src: Source; locate: Locate; name?: string; hostname?: string; machine?: string; mountSources: boolean },
): Promise<{ config?: Config; problems: Problem[] }> {
  const parsed = RumYamlSchema.safeParse(data, { reportInput: true, error: issueMessage });
  if (!parsed.success) {
    // A value of the wrong type also fails the checks meant for the right one: say it once.
    const mistyped = new Set(parsed.error.issues.filter((i) => i.code === 'invalid_type').map((i) => pathText(i.path)));
    const issues = parsed.error.issues.filter((i) => i.code === 'invalid_type' || !mistyped.has(pathText(i.path)));
    return { problems: issues.flatMap(issueProblems) };
  }
  const raw = parsed.data;
  const name = at.name ?? raw.name ?? vmNameFromDir(basename(at.dir)) ?? ''; // '': unnamed(), by the caller
  const config: Config = {
    ...raw,
    name,
    machine: at.machine ?? name,
    after: [],
    network: {
      ...raw.network,
      mode: raw.network.mode ?? (isSessionUri(raw.libvirt.uri) ? 'user' : 'nat'),
      hostname: raw.network.hostname ?? at.hostname ?? name,
    },
    mounts: raw.mounts.map((m) => ({ ...m, hostPath: resolve(at.dir, expandHome(m.source, at.env)) })),
    file: at.src.file,
    dir: at.dir,
  };
  return { config, problems: await checkRules(config, at.locate, { mountSources: at.mountSources }) };
}

/** The project has no name:, and its directory's name gives none. Not about any line of the file. */
function unnamed(file: string, dir: string): Diagnostic {
  return {
    file,
    line: 1,
    col: 1,
    message: `the directory name ${JSON.stringify(basename(dir))} gives no usable VM name`,
    hint: 'set one in rum.yaml, e.g. name: myproject (lowercase letters, digits and -)',
  };
}

/** The keys of `machines:` as the file writes them. */
function machineOrder(src: Source): string[] {
  const node = src.deref(src.doc.get('machines', true));
  return isMap(node) ? node.items.map((pair) => keyText(pair.key)) : [];
}

function sorted(diagnostics: Diagnostic[]): Diagnostic[] {
  return [...diagnostics].sort((a, b) => a.line - b.line || a.col - b.col);
}

/** `~` and `~/x` in a mount source mean the user's home, as in a shell. */
function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  if (p !== '~' && !p.startsWith('~/')) return p;
  return join(env.HOME && env.HOME.startsWith('/') ? env.HOME : homedir(), p.slice(1));
}

