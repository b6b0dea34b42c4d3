// Owns: asking this host small questions for `rum doctor`: running a tool (English messages, killed
// when its check gives up), reading a file that may be absent or unreadable, and the user's groups
// as /etc/group lists them. Never starts a service or changes anything.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export type ToolRun =
  | { missing: true }
  | { missing?: undefined; status: number | null; stdout: string; stderr: string };

/**
 * One run of `cmd`, its output collected. Absent from PATH: `{ missing: true }`. An abort (the
 * check's time is up) kills it. LC_ALL=C: callers match the tools' English messages.
 */
export function runTool(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<ToolRun> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let startError: string | undefined;
    const child = spawn(cmd, args, {
      env: { ...(opts.env ?? process.env), LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.signal ? { signal: opts.signal } : {}),
      killSignal: 'SIGKILL',
    });
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') resolve({ missing: true });
      else startError = e.message;
    });
    child.once('close', (status) =>
      resolve({
        status,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: startError ?? Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

/** A file's text; undefined when it is absent or this user may not read it. */
export async function readTextMaybe(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** /etc/group: `name:x:gid:user1,user2`. Lines that do not parse (comments, NIS `+`) are skipped. */
export function parseGroupFile(text: string): GroupEntry[] {
  return text.split('\n').flatMap((line) => {
    const [name, , gid, members] = line.trim().split(':');
    if (!name || name.startsWith('#') || name.startsWith('+') || gid === undefined || !/^\d+$/.test(gid)) return [];
    return [{ name, gid: Number(gid), members: (members ?? '').split(',').map((m) => m.trim()).filter(Boolean) }];
  });
}

/**
 * The groups a process started for `user` gets (what libvirt gives QEMU running as the user,
 * and what a new login gets): the primary group and every /etc/group entry naming the user.
 */
export function loginGids(user: string, primaryGid: number, groups: GroupEntry[]): number[] {
  return [...new Set([primaryGid, ...groups.filter((g) => g.members.includes(user)).map((g) => g.gid)])];
}
