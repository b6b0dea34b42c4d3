// Owns: what machines of one file may each hold alone but not share: a host port forwarded on
// one address and protocol, a guest hostname. Each machine is a valid VM; together they would
// clash at `rum up`. Not: the checks within one VM (rules.ts; the same port twice in one machine
// is theirs), or where a path is in the text (load.ts hands us each machine's origins and the line
// of a file path, we hand back problems at file paths). Mounts may be shared: no check.
import { listText, type Origin } from './machines.js';
import { hostSocketText, sameHostSocket, type ConfigPath, type Problem } from './rules.js';
import type { Config } from './schema.js';

/** One machine of the file, loaded. */
export interface PlacedMachine {
  config: Config;
  /** Where a path of its merged settings was written (machines.ts originOf). */
  origin: (path: ConfigPath) => Origin;
  /** Its settings, own or inherited, set network.hostname; else its hostname is its name. */
  hostnameSet: boolean;
}

/** A problem at a file path. `inheritedBy`: the machine that met it in inherited settings, named
 * once the problem is said (SaidOnce); undefined when the message names the machines itself. */
export interface Clash {
  problem: Problem;
  inheritedBy?: string;
}

/**
 * Every host port and hostname two machines would share, at the later one's line (for a hostname,
 * at the one that is set). One top-level value that several machines inherit is said once, naming
 * them all.
 */
export function clashes(machines: readonly PlacedMachine[], lineOf: (path: ConfigPath) => number): Clash[] {
  const found: Clash[] = [];
  const shared = new Shared();
  machines.forEach((m, i) => {
    const earlier = machines.slice(0, i);
    m.config.ports.forEach((port, p) => {
      for (const e of earlier) {
        const q = e.config.ports.findIndex((other) => sameHostSocket(other, port));
        if (q < 0) continue;
        const here = m.origin(['ports', p, 'host']);
        const there = e.origin(['ports', q, 'host']);
        const what = `host port ${hostSocketText(port, e.config.ports[q]!)}`;
        if (here.inherited && there.inherited && samePath(here.path, there.path)) {
          shared.add(here, [e, m], (names) => ({
            message: `${what} would be forwarded by machines ${names}, which inherit it from the top level`,
            hint: 'a host port is forwarded by one machine: move this entry into the machine that serves it',
          }));
        } else {
          found.push(at(here, m, `${what} is already forwarded by machine ${e.config.machine} (line ${lineOf(there.path)})`,
            'each host address and port can be forwarded by one machine: pick another host port'));
        }
        break;
      }
    });

    const hostname = m.config.network.hostname;
    const e = earlier.find((o) => o.config.network.hostname === hostname && (o.hostnameSet || m.hostnameSet));
    if (!e) return;
    // At a hostname that is set: the later machine's, unless only the earlier one sets it.
    const [setter, other] = m.hostnameSet ? [m, e] : [e, m];
    const here = setter.origin(['network', 'hostname']);
    const there = other.origin(['network', 'hostname']);
    const hint = "each machine needs its own hostname: pick another, or leave network.hostname out to use the machine's name";
    if (other.hostnameSet && here.inherited && there.inherited && samePath(here.path, there.path)) {
      shared.add(here, [e, m], (names) => ({
        message: `network.hostname ${hostname} would be the hostname of machines ${names}, which inherit it from the top level`,
        hint: "set network.hostname in each machine, or remove it here: each machine's hostname is then its name",
      }));
    } else {
      const whose = other.hostnameSet ? `(line ${lineOf(there.path)})` : '(its name)';
      found.push(at(here, setter, `network.hostname ${hostname} is also the hostname of machine ${other.config.machine} ${whose}`, hint));
    }
  });
  return [...found, ...shared.clashes()];
}

/** The problem at `o`, the place machine `m` got the value from. */
function at(o: Origin, m: PlacedMachine, message: string, hint: string): Clash {
  const problem: Problem = { path: o.path, ...(o.part ? { part: o.part } : {}), message, hint };
  return o.inherited ? { problem, inheritedBy: m.config.machine } : { problem };
}

const samePath = (a: ConfigPath, b: ConfigPath) => a.length === b.length && a.every((seg, i) => seg === b[i]);

/** Top-level values that several machines inherit and so share: one problem each, naming them all. */
class Shared {
  private readonly byPath = new Map<string, { origin: Origin; machines: string[]; words: (names: string) => Omit<Problem, 'path'> }>();

  add(origin: Origin, machines: PlacedMachine[], words: (names: string) => Omit<Problem, 'path'>): void {
    const key = origin.path.map(String).join('\0');
    const entry = this.byPath.get(key) ?? { origin, machines: [], words };
    this.byPath.set(key, entry);
    for (const m of machines) if (!entry.machines.includes(m.config.machine)) entry.machines.push(m.config.machine);
  }

  clashes(): Clash[] {
    return [...this.byPath.values()].map(({ origin, machines, words }) => ({ problem: { path: origin.path, ...words(listText(machines)) } }));
  }
}
