// I/O figures for make bench, on one guest with a virtiofs and a 9p share (qemu:///system, in the
// sandbox): `rum cp` of a 200 MB tree beside `tar | ssh`, the inotify bridge's latency and a
// 10,000-file burst, and a 1 GiB sequential read through virtiofs, 9p and `rum cp`.
// Every wait has a bound; every process started here is ended here, by its own handle.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { repoUrl } from '../test/e2e/env.js';

type Add = (what: string, rum: string, baseline: string, target: string) => void;
const root = fileURLToPath(new URL('../../', import.meta.url));
const rum = join(root, 'bin/rum');
const inNs = join(root, 'test/e2e/rum-in-ns');
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mbps = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;

export async function ioBench(add: Add, mirror: string, median: (xs: number[]) => number): Promise<void> {
  console.error('rum bench: I/O figures (cp, inotify bridge, shares)');
  const work = mkdtempSync(join(tmpdir(), 'rum-bench-io-'));
  chmodSync(work, 0o755);
  const proj = join(work, 'proj');
  for (const d of ['', 'vfs', 'p9', 'tree']) mkdirSync(join(proj, d), { recursive: true });
  const name = 'rumtest-bench-io';
  writeFileSync(
    join(proj, 'rum.yaml'),
    stringify({
      name,
      image: { base: 'debian-12' },
      resources: { cpus: 2, memory: '2G', disk: '5G' },
      network: { mode: 'user' },
      mounts: [
        { source: './vfs', target: '/work', type: 'virtiofs', inotify: true },
        { source: './p9', target: '/p9', type: '9p' },
      ],
      provision: { packages: ['inotify-tools'], apt_sources: [`deb [trusted=yes] ${repoUrl('slirp')} ./`] },
    }),
  );
  const envArgs = [`XDG_DATA_HOME=${join(work, 'data')}`, `XDG_CACHE_HOME=${join(work, 'cache')}`, `RUM_IMAGE_MIRROR=${mirror}`, 'NO_COLOR=1'];
  const rumArgv = (...args: string[]) => ['env', ...envArgs, rum, ...args];
  const run = (...args: string[]): string => execFileSync(inNs, rumArgv(...args), { cwd: proj, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 2 ** 26 });
  const timed = (fn: () => void): number => {
    const t0 = process.hrtime.bigint();
    fn();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const children: ChildProcess[] = [];
  try {
    run('up');
    const vmDir = join(work, 'data', 'rum', name);
    const port = JSON.parse(readFileSync(join(vmDir, 'state.json'), 'utf8')).nodes['ssh-ready'].data.port as number;
    const ssh = ['ssh', '-i', join(vmDir, 'id_ed25519'), '-o', `UserKnownHostsFile=${join(vmDir, 'known_hosts')}`, '-o', `HostKeyAlias=rum-${name}`];
    const sshArgs = [...ssh, '-o', 'StrictHostKeyChecking=yes', '-p', String(port), 'rum@127.0.0.1'];
    const guest = (cmd: string): string => run('exec', '--', 'sh', '-c', cmd);

    // --- rum cp: a 200 MB tree (one 100 MB file, 2,000 files of 50 kB), incompressible.
    const tree = join(proj, 'tree', 't');
    mkdirSync(join(tree, 'small'), { recursive: true });
    writeBig(join(tree, 'big.bin'), 100 * 2 ** 20);
    for (let i = 0; i < 2000; i++) writeFileSync(join(tree, 'small', `f${i}`), randomBytes(50 * 1024));
    const treeBytes = 100 * 2 ** 20 + 2000 * 50 * 1024;
    const ups: number[] = [];
    const tarUps: number[] = [];
    const downs: number[] = [];
    const tarDowns: number[] = [];
    for (let i = 0; i < 3; i++) {
      guest('rm -rf ~/up ~/tarup && mkdir -p ~/tarup');
      ups.push(timed(() => run('cp', tree, ':up')));
      // The baseline: what a user would type, inside the same namespace.
      tarUps.push(timed(() => execFileSync('sh', ['-c', `tar -C ${join(proj, 'tree')} -cf - t | ${inNs} ${sshArgs.map(q).join(' ')} 'tar -C ~/tarup -xf -'`])));
      rmSync(join(work, 'down'), { recursive: true, force: true });
      rmSync(join(work, 'tardown'), { recursive: true, force: true });
      mkdirSync(join(work, 'tardown'));
      downs.push(timed(() => run('cp', ':up', join(work, 'down'))));
      tarDowns.push(timed(() => execFileSync('sh', ['-c', `${inNs} ${sshArgs.map(q).join(' ')} 'tar -C ~ -cf - up' | tar -C ${join(work, 'tardown')} -xf -`])));
    }
    const [up, tarUp, down, tarDown] = [ups, tarUps, downs, tarDowns].map(median) as [number, number, number, number];
    add('`rum cp` 200 MB tree to the guest', `${sec(up)} (${mbps(treeBytes, up)})`, `tar | ssh: ${sec(tarUp)} (${(up / tarUp).toFixed(2)}x)`, '≤ 1.3x');
    add('`rum cp` 200 MB tree from the guest', `${sec(down)} (${mbps(treeBytes, down)})`, `ssh tar | tar: ${sec(tarDown)} (${(down / tarDown).toFixed(2)}x)`, '≤ 1.3x');
    rmSync(join(proj, 'tree'), { recursive: true, force: true });
    rmSync(join(work, 'down'), { recursive: true, force: true });
    rmSync(join(work, 'tardown'), { recursive: true, force: true });
    guest('rm -rf ~/up ~/tarup');

    // --- The inotify bridge: one edit's latency, then a 10,000-file burst.
    // Shaped like a source tree a checkout rewrites: 100 directories of 100 files. (chokidar
    // rereads a whole directory on each event in it, so 10,000 files in one directory cost the
    // host seconds of lstat per second of burst: README, known limits.)
    const burstFile = (i: number) => join(proj, 'vfs', 'burst', `d${Math.floor(i / 100)}`, `f${i % 100}.txt`);
    for (let d = 0; d < 100; d++) mkdirSync(join(proj, 'vfs', 'burst', `d${d}`), { recursive: true });
    for (let i = 0; i < 10_000; i++) writeFileSync(burstFile(i), 'v0\n');
    // The watcher sees every event; of the burst it reports a count of distinct files every 1,000,
    // as a dev server prints nothing per file: 10,000 lines over SSH would be the bench's own load
    // on the guest's CPUs, not the bridge's. A change to <prefix>round starts a new count. It
    // waits for IN_MODIFY, what fs.watch-based dev servers act on: a burst is replayed as that
    // (src/mounts/replay.ts). (mawk, Debian's awk, reads a pipe in blocks unless told
    // `-W interactive`: without it no line comes out until 4 kB have gone in.)
    const countBurst = String.raw`$0 == P "round" { delete s; n = 0; print "round"; fflush(); next } index($0, P) == 1 { if (!($0 in s)) { s[$0] = 1; n++; if (n % 1000 == 0) { print "burst " n; fflush() } } next } { print; fflush() }`;
    const inotifywait = (dir: string) => `stdbuf -oL inotifywait -m -r -e modify --format %w%f ${dir}`;
    const counter = (dir: string) => `mawk -W interactive -v P=${dir}/burst/ ${q(countBurst)}`;
    const watcherOn = (dir: string) => `${inotifywait(dir)} 2>&1 | ${counter(dir)}`;
    const watcher = lineStream(spawn(inNs, rumArgv('exec', '--', 'sh', '-c', watcherOn('/work')), { cwd: proj, stdio: ['ignore', 'pipe', 'ignore'] }));
    children.push(watcher.child);
    await watcher.waitFor((l) => l === 'Watches established.', 60_000);
    const bridge = lineStream(spawn(inNs, rumArgv('watch', '--json'), { cwd: proj, stdio: ['ignore', 'pipe', 'ignore'] }));
    children.push(bridge.child);
    await bridge.waitFor((l) => l.includes('"ready"'), 60_000);
    const lat: number[] = [];
    for (let i = 0; i < 15; i++) {
      const f = `lat-${i}.txt`;
      const t0 = performance.now();
      writeFileSync(join(proj, 'vfs', f), `${i}\n`);
      await watcher.waitFor((l) => l === `/work/${f}`, 10_000);
      lat.push(performance.now() - t0);
      await sleep(300);
    }
    // The watcher's line comes back over SSH too, so this is an upper bound of the event's delay.
    add('inotify bridge: host edit → guest watcher event', `${median(lat).toFixed(0)} ms`, 'round trip of the report included', '≤ 250 ms');

    const bursts: number[] = [];
    const trips: number[] = [];
    let written = 0;
    for (let round = 1; round <= 3; round++) {
      writeFileSync(join(proj, 'vfs', 'burst', 'round'), `${round}\n`);
      await watcher.waitFor((l) => l === 'round', 10_000);
      await sleep(2000); // the last round's echoes settle on the host
      const batchesBefore = bridge.lines.filter((l) => l.includes('"batch"')).length;
      let seen = 0;
      const t0 = performance.now();
      for (let i = 0; i < 10_000; i++) writeFileSync(burstFile(i), `v${round}\n`);
      written = performance.now() - t0;
      // Bounded at 3 minutes: a burst that does not arrive by then fails the bench, with its count.
      const complete = await watcher
        .waitFor((l) => {
          if (l.startsWith('burst ')) seen = Number(l.slice(6));
          return seen >= 10_000;
        }, 180_000)
        .then(() => true, () => false);
      if (!complete) throw new Error(`inotify bridge burst: only ${seen} of 10,000 files reached the guest's watcher in 3 minutes`);
      bursts.push(performance.now() - t0);
      await sleep(1000); // let the last batch's line arrive
      trips.push(bridge.lines.filter((l) => l.includes('"batch"')).length - batchesBefore);
    }
    for (const c of children) c.kill('SIGINT');
    await Promise.all([watcher.exited, bridge.exited]);
    children.length = 0;
    // Two baselines: the guest alone changing the mtime of the same 10,000 files, one utimensat
    // each in one process, with the same watcher; no host watcher, SSH or rum involved. On the
    // share (the bridge stopped): one FUSE round trip per file, the floor for any bridge. On its
    // own disk: what making and hearing 10,000 events costs this guest at all. Timed in the
    // guest, from the loop's start (Python already running) to the watcher's count.
    const aloneOn = (dir: string, create: boolean): number => {
      // As root, as the replay runs: the share's files are the host user's, not the guest user's.
      const ms = guest(`sudo -n sh -c ${q(guestAloneBurst(dir, inotifywait(dir), counter(dir), create))}`).trim().split('\n').map(Number);
      if (ms.length !== 3 || ms.some((x) => !(x > 0))) throw new Error(`the guest-alone burst in ${dir} printed ${ms.join(' ')}`);
      return median(ms);
    };
    const onShare = aloneOn('/work', false);
    rmSync(join(proj, 'vfs', 'burst'), { recursive: true, force: true });
    const onDisk = aloneOn('/var/tmp/rum-burst', true);
    const burst = median(bursts);
    add(
      'inotify bridge: 10,000-file burst (100 dirs × 100 files) replayed',
      `${sec(burst)}, ${median(trips)} round trips`,
      `the guest alone: on the share ${sec(onShare)} (${(burst / onShare).toFixed(1)}x), on its own disk ${sec(onDisk)}; host wrote them in ${sec(written)}`,
      '≤ 3 s, ≤ 50 round trips',
    );

    // --- 1 GiB sequential read: virtiofs, 9p, rum cp. The guest's page cache is dropped each time.
    writeBig(join(proj, 'vfs', 'big.bin'), 2 ** 30);
    linkSync(join(proj, 'vfs', 'big.bin'), join(proj, 'p9', 'big.bin'));
    const readThrough = (path: string): number => {
      // dd reports what it read: a short read would show here, not as a fast figure.
      const out = guest(`sync; echo 3 | sudo -n tee /proc/sys/vm/drop_caches >/dev/null; s=$(date +%s%N); dd if=${path} of=/dev/null bs=1M 2>/tmp/dd; e=$(date +%s%N); echo $(( (e - s) / 1000000 )) $(sed -n 3p /tmp/dd | cut -d' ' -f1)`);
      const [ms, bytes] = out.trim().split(/\s+/).map(Number) as [number, number];
      if (bytes !== 2 ** 30) throw new Error(`${path}: read ${bytes} bytes, not 1 GiB`);
      return ms;
    };
    const vfs: number[] = [];
    const p9: number[] = [];
    const cps: number[] = [];
    for (let i = 0; i < 3; i++) {
      vfs.push(readThrough('/work/big.bin'));
      p9.push(readThrough('/p9/big.bin'));
      guest('rm -f ~/big.bin');
      cps.push(timed(() => run('cp', join(proj, 'vfs', 'big.bin'), ':big.bin')));
    }
    guest('rm -f ~/big.bin');
    const gib = 2 ** 30;
    add(
      '1 GiB sequential read in the guest',
      `virtiofs: ${mbps(gib, median(vfs))}`,
      `9p: ${mbps(gib, median(p9))}; rum cp: ${mbps(gib, median(cps))}`,
      'reported side by side',
    );
  } finally {
    for (const c of children) c.kill('SIGKILL');
    try {
      run('destroy', '-y');
    } catch {
      /* reported by the run that failed */
    }
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A guest shell script: three rounds of one mtime change on each of 10,000 files under
 * root/burst (made first, when `create`), with the watcher running; prints each round's
 * milliseconds. Every wait is bounded.
 */
export function guestAloneBurst(root: string, inotifywait: string, counter: string, create: boolean): string {
  const py = String.raw`
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class TS(ctypes.Structure):
    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
tv = (TS * 2)(TS(0, (1 << 30) - 2), TS(int(time.time()) + int(sys.argv[2]), 0))
paths = [os.fsencode(sys.argv[1]) + b'/burst/d%d/f%d.txt' % (i // 100, i % 100) for i in range(10000)]
print(time.time_ns() // 1000000, flush=True)
for p in paths:
    if libc.utimensat(-100, p, tv, 0) != 0:
        sys.exit('utimensat %s: %s' % (p, os.strerror(ctypes.get_errno())))
`;
  const make = String.raw`
import pathlib, sys
b = pathlib.Path(sys.argv[1], 'burst')
for d in range(100): (b / ('d%d' % d)).mkdir(parents=True)
for i in range(10000): (b / ('d%d' % (i // 100)) / ('f%d.txt' % (i % 100))).write_text('v0\n')
(b / 'round').write_text('0\n')
`;
  return `set -e
B=${q(root)}; O=/tmp/rum-burst.out; F=/tmp/rum-burst.fifo
rm -f $O $F; mkfifo $F
${create ? `rm -rf $B; python3 -c ${q(make)} $B` : 'test -f $B/burst/round'}
${inotifywait} > $F 2>&1 &
iw=$!
trap 'kill $iw 2>/dev/null || true' EXIT
${counter} < $F > $O &
wait_for() { i=0; until [ "$(grep -c "$1" $O)" -ge "$2" ]; do i=$((i + 1)); [ $i -lt 3000 ] || { echo "no $2 × '$1' in 60 s" >&2; exit 1; }; sleep 0.02; done; }
wait_for '^Watches established' 1
for r in 1 2 3; do
  touch -m -d @$(($(date +%s) + 100 + r)) $B/burst/round
  wait_for '^round$' $r
  t0=$(python3 -c ${q(py)} $B $((100 + r)))
  wait_for '^burst 10000$' $r
  echo $(( $(date +%s%3N) - t0 ))
done
kill $iw; trap - EXIT; wait
${create ? 'rm -rf $B $O $F' : 'rm -f $O $F'}`;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function writeBig(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const chunk = randomBytes(8 * 2 ** 20);
  for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  closeSync(fd);
}

/** A child's stdout as lines, with a bounded wait for a line that matches. */
function lineStream(child: ChildProcess): {
  child: ChildProcess;
  lines: string[];
  exited: Promise<void>;
  waitFor(match: (line: string) => boolean, timeoutMs: number): Promise<void>;
} {
  const lines: string[] = [];
  let waiter: { match: (l: string) => boolean; done: () => void } | undefined;
  let rest = '';
  child.stdout!.on('data', (c: Buffer) => {
    const parts = (rest + c.toString()).split('\n');
    rest = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      if (waiter?.match(l)) waiter.done();
    }
  });
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  return {
    child,
    lines,
    exited,
    waitFor: (match, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching line in ${timeoutMs} ms (last: ${lines.at(-1) ?? 'none'})`)), timeoutMs);
        waiter = {
          match,
          done: () => {
            clearTimeout(timer);
            waiter = undefined;
            resolve();
          },
        };
      }),
  };
}
