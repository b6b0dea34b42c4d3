// Owns: handing a guest to the OpenSSH client: the argv for `ssh`, a Host block for ~/.ssh/config,
// and running `ssh` in rum's place. Every form pins the host key (StrictHostKeyChecking yes, our
// own known_hosts); none ever turns checking off.
import { spawn } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { constants } from 'node:os';
import { RumError } from '../errors.js';
import { seeDoctor } from '../host/check.js';

export interface OpenSshTarget {
  host: string;
  port: number;
  user: string;
  keyPath: string; // absolute: the VM's private key
  knownHostsPath: string; // absolute: written by known-hosts.ts
  alias: string; // the HostKeyAlias (and Host name), e.g. rum-<name>
}

/**
 * `ssh` argv: options, then `-p port user@host`, then `extra` (the remote command and its words;
 * ssh joins them with spaces for the guest's shell, so quote them with `shellQuote`).
 */
export function opensshArgs(t: OpenSshTarget, extra: string[] = []): string[] {
  // IdentityFile by -o, not -i: ssh checks an -i path as written but opens it %-expanded, so a
  // path with a % in it could not be given both ways at once.
  const s: [string, string][] = [['IdentityFile', quoteConfigValue(pathForOpenSsh('key', t.keyPath))], ...settings(t)];
  return [
    ...s.flatMap(([k, v]) => ['-o', `${k}=${v}`]),
    '-p', String(t.port),
    `${t.user}@${t.host}`,
    ...extra,
  ];
}

/** A `Host <alias>` block for ~/.ssh/config with the same settings as `opensshArgs`. */
export function sshConfigBlock(t: OpenSshTarget): string {
  const lines = [
    `Host ${t.alias}`,
    `  HostName ${t.host}`,
    `  Port ${t.port}`,
    `  User ${t.user}`,
    `  IdentityFile ${quoteConfigValue(pathForOpenSsh('key', t.keyPath))}`,
    ...settings(t).map(([k, v]) => `  ${k} ${v}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** Options shared by the argv and the config block; values already quoted for ssh_config. */
function settings(t: OpenSshTarget): [string, string][] {
  check(t);
  return [
    ['IdentitiesOnly', 'yes'], // only the VM's key: an agent full of keys can hit MaxAuthTries
    ['UserKnownHostsFile', quoteConfigValue(pathForOpenSsh('known_hosts', t.knownHostsPath))],
    ['GlobalKnownHostsFile', '/dev/null'],
    ['StrictHostKeyChecking', 'yes'],
    ['HostKeyAlias', t.alias], // the pin holds whatever address or port the guest has today
    ['CheckHostIP', 'no'], // no second lookup by IP, which would find nothing and warn
    ['UpdateHostKeys', 'no'], // ssh must not rewrite rum's file
    ['LogLevel', 'ERROR'],
  ];
}

// Validated rather than quoted: these are never paths, and a space, quote or pattern character
// in them is a bug upstream. User is percent-expanded by newer OpenSSH; HostName always is.
function check(t: OpenSshTarget): void {
  const bad = (what: string, v: string): never => {
    throw new RumError('BUG', `ssh: ${what} ${JSON.stringify(v)} cannot be passed to OpenSSH safely`);
  };
  if (!/^[A-Za-z0-9._-]+$/.test(t.alias) || t.alias.startsWith('-')) bad('alias', t.alias);
  if (!/^[A-Za-z0-9._-]+$/.test(t.host) && !/^[0-9A-Fa-f:.]+$/.test(t.host)) bad('host', t.host);
  if (t.host.startsWith('-')) bad('host', t.host);
  if (!/^[A-Za-z_][A-Za-z0-9._-]*$/.test(t.user)) bad('user', t.user);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) bad('port', String(t.port));
}

/**
 * OpenSSH expands `%x` and `~` in IdentityFile and UserKnownHostsFile, and `${VAR}` too. `%` is
 * escaped as `%%`; `${` has no escape, so such a path is refused. Absolute only: a relative
 * IdentityFile in ~/.ssh/config would not mean what it meant where rum ran.
 */
function pathForOpenSsh(what: string, p: string): string {
  if (!isAbsolute(p)) throw new RumError('BUG', `ssh: the ${what} path ${JSON.stringify(p)} is not absolute`);
  if (/[\n\r\0]/.test(p) || p.includes('${')) {
    throw new RumError('SSH', `the ${what} path ${JSON.stringify(p)} cannot be given to OpenSSH`, 'move rum\'s data directory (XDG_DATA_HOME) to a plainer path');
  }
  return p.replace(/%/g, '%%');
}

/**
 * A value as ssh_config (and `-o`) tokenises it: double quotes, with `\` before `"` and `\`.
 * Unquoted, a space would split a path in two.
 */
export function quoteConfigValue(v: string): string {
  if (/^[A-Za-z0-9_./%:@+-]+$/.test(v)) return v;
  return `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** One word for a POSIX shell (the guest's login shell runs the command ssh sends). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./:=@%+,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

// Not SIGWINCH: the terminal sends that to ssh itself, as ssh is in its foreground group.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * Run `ssh` in rum's place. Node has no exec(3), so this is the nearest: the terminal is
 * inherited, signals sent to rum go on to ssh (and do not end rum first), and the result is ssh's
 * exit status (128 + n when a signal ended it) for the CLI to exit with.
 */
export async function execOpenSsh(args: string[], opts: { bin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  const bin = opts.bin ?? 'ssh';
  const child = spawn(bin, args, { stdio: 'inherit', env: opts.env ?? process.env });
  const forward = (sig: NodeJS.Signals) => () => {
    child.kill(sig);
  };
  const handlers = FORWARDED.map((sig) => [sig, forward(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          err.code === 'ENOENT'
            ? new RumError('TOOL_MISSING', `${bin} is not installed`, `install the OpenSSH client, e.g. apt install openssh-client${seeDoctor('ssh')}`, {
                cause: err,
              })
            : new RumError('SSH', `cannot run ${bin}: ${err.message}`, undefined, { cause: err }),
        );
      });
      child.once('exit', (code, signal) => {
        resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
      });
    });
  } finally {
    for (const [sig, h] of handlers) process.removeListener(sig, h);
  }
}
