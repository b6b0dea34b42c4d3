// The ISO writer, checked by readers nobody here wrote: isoinfo (genisoimage), xorriso
// (libisofs), blkid and, where allowed, the kernel's own iso9660 driver.

import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { RumError } from '../../src/errors.js';
import { buildIso, type IsoFile } from '../../src/iso/iso9660.js';

let dir: string;
let seq = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rum-iso-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const seed: IsoFile[] = [
  { name: 'user-data', data: '#cloud-config\nusers:\n  - name: dev\n' },
  { name: 'meta-data', data: 'instance-id: rum-3f2a\nlocal-hostname: dev\n' },
  { name: 'network-config', data: 'version: 2\nethernets: {}\n' },
];

async function writeIso(files: IsoFile[], volumeId = 'cidata'): Promise<string> {
  const file = join(dir, `${++seq}.iso`);
  await writeFile(file, buildIso({ volumeId, files }));
  return file;
}

// LC_ALL=C: the patterns below match the tools' English output.
async function run(cmd: string, args: string[]): Promise<string> {
  return (await execa(cmd, args, { env: { LC_ALL: 'C' } })).stdout;
}

async function runBytes(cmd: string, args: string[]): Promise<Buffer> {
  return Buffer.from((await execa(cmd, args, { env: { LC_ALL: 'C' }, encoding: 'buffer', stripFinalNewline: false })).stdout);
}

/** Names in the root as isoinfo lists them, without '.' and '..'. */
async function listed(iso: string, namespace: '-R' | '-J' | 'primary'): Promise<string[]> {
  const args = namespace === 'primary' ? ['-l', '-i', iso] : [namespace, '-l', '-i', iso];
  const names = [...(await run('isoinfo', args)).matchAll(/\]\s\s(.+?) ?$/gm)].map((m) => m[1] ?? '');
  return names.filter((n) => n !== '.' && n !== '..');
}

const bytesOf = (f: IsoFile) => Buffer.from(f.data);
const sortedNames = (files: IsoFile[]) => files.map((f) => f.name).sort();

async function assertReadable(iso: string, files: IsoFile[]): Promise<void> {
  assert.deepEqual((await listed(iso, '-R')).sort(), sortedNames(files));
  assert.deepEqual((await listed(iso, '-J')).sort(), sortedNames(files));
  for (const f of files) {
    assert.deepEqual(await runBytes('isoinfo', ['-R', '-x', `/${f.name}`, '-i', iso]), bytesOf(f), `RR ${f.name}`);
    assert.deepEqual(await runBytes('isoinfo', ['-J', '-x', `/${f.name}`, '-i', iso]), bytesOf(f), `Joliet ${f.name}`);
  }
  const out = join(dir, `x${++seq}`);
  await execa('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', out]);
  assert.deepEqual((await readdir(out)).sort(), sortedNames(files));
  for (const f of files) assert.deepEqual(await readFile(join(out, f.name)), bytesOf(f), `xorriso ${f.name}`);
}

test('a NoCloud seed is labelled cidata and carries Joliet and Rock Ridge', async () => {
  const iso = await writeIso(seed);
  const info = await run('isoinfo', ['-d', '-i', iso]);
  assert.match(info, /^Volume id: cidata$/m);
  assert.match(info, /^Joliet with UCS level 3 found$/m);
  assert.match(info, /^Rock Ridge signatures version 1 found$/m);
  // cloud-init finds its seed by this label
  assert.equal((await run('blkid', ['-o', 'value', '-s', 'LABEL', iso])).trim(), 'cidata');
});

test('long lowercase names read back exactly through Rock Ridge, Joliet and xorriso', async () => {
  const iso = await writeIso(seed);
  await assertReadable(iso, seed);
  assert.deepEqual(await listed(iso, 'primary'), ['META_DAT.;1', 'NETWORK_.;1', 'USER_DAT.;1']);
});

test('the same files give the same bytes, in any order; other content gives other bytes', () => {
  const a = buildIso({ volumeId: 'cidata', files: seed });
  const b = buildIso({ volumeId: 'cidata', files: [...seed].reverse() });
  assert.ok(a.equals(b));
  const changed = seed.map((f) => (f.name === 'meta-data' ? { ...f, data: 'instance-id: rum-3f2b\n' } : f));
  assert.ok(!a.equals(buildIso({ volumeId: 'cidata', files: changed })));
  assert.ok(!a.equals(buildIso({ volumeId: 'CIDATA', files: seed })));
  assert.equal(a.length % 2048, 0);
});

test('a 1 MiB binary file and an empty file', async () => {
  const big = Buffer.alloc(1024 * 1024 + 7);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 11)) & 0xff; // every byte value, no period of 2048
  const files: IsoFile[] = [
    { name: 'big.bin', data: big },
    { name: 'empty', data: '' },
    { name: 'meta-data', data: new Uint8Array([0, 1, 2, 255]) },
  ];
  await assertReadable(await writeIso(files), files);
});

test('40 files spill the directories over several sectors and stay readable', async () => {
  const files: IsoFile[] = Array.from({ length: 40 }, (_, i) => ({
    name: `file-with-a-fairly-long-name-${String(i).padStart(2, '0')}.yaml`,
    data: `n: ${i}\n`.repeat(i),
  }));
  const iso = await writeIso(files);
  await assertReadable(iso, files);
  const root = (await run('isoinfo', ['-R', '-l', '-i', iso])).match(/^\S+\s+\d+\s+\d+\s+\d+\s+(\d+) .*\]\s\s\. $/m);
  assert.ok(Number(root?.[1]) > 2048, 'the root directory takes more than one sector');
  const primary = await listed(iso, 'primary');
  assert.equal(new Set(primary).size, 40, 'clashing 8.3 names are made unique');
  for (const id of primary) assert.match(id, /^[A-Z0-9_]{1,8}\.[A-Z0-9_]{0,3};1$/);
});

test('xorriso finds nothing wrong with the image', async () => {
  const iso = await writeIso(seed);
  const { stdout, stderr } = await execa('xorriso', ['-indev', iso, '-check_media', '--'], { env: { LC_ALL: 'C' } });
  const all = `${stdout}\n${stderr}`;
  assert.doesNotMatch(all, /WARNING|SORRY|FAILURE|FATAL|MISHAP/);
  assert.match(all, /Media region :\s+0 ,\s+\d+ , \+ good/);
});

test('the kernel mounts it and reads the files', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for mount -o loop');
  // Probe with genisoimage's image first, so a broken image of ours fails instead of skipping.
  const src = join(dir, `src${++seq}`);
  await mkdir(src);
  await writeFile(join(src, 'meta-data'), 'probe\n');
  const probe = join(dir, `probe${seq}.iso`);
  await execa('genisoimage', ['-quiet', '-volid', 'cidata', '-joliet', '-rock', '-o', probe, src]);
  const refused = await mounted(probe, async () => {});
  if (refused !== undefined) return t.skip(`loop mount of a genisoimage ISO fails here: ${refused}`);

  const iso = await writeIso(seed);
  const failed = await mounted(iso, async (mnt) => {
    assert.deepEqual((await readdir(mnt)).sort(), sortedNames(seed));
    for (const f of seed) assert.deepEqual(await readFile(join(mnt, f.name)), bytesOf(f));
  });
  assert.equal(failed, undefined);
});

/** Runs `use` on the image mounted read-only; returns mount's complaint if it would not mount. */
async function mounted(iso: string, use: (mnt: string) => Promise<void>): Promise<string | undefined> {
  const mnt = join(dir, `mnt${++seq}`);
  await mkdir(mnt);
  const r = await execa('mount', ['-o', 'loop,ro', '-t', 'iso9660', iso, mnt], { reject: false, env: { LC_ALL: 'C' } });
  if (r.exitCode !== 0) return r.stderr.split('\n')[0] || `mount exited ${r.exitCode}`;
  try {
    await use(mnt);
  } finally {
    await execa('umount', [mnt]);
  }
  return undefined;
}

test('invalid input is a programmer error', () => {
  const bad: [string, () => unknown][] = [
    ['duplicate', () => buildIso({ volumeId: 'cidata', files: [seed[0]!, seed[0]!] })],
    ['slash', () => buildIso({ volumeId: 'cidata', files: [{ name: 'a/b', data: '' }] })],
    ['NUL', () => buildIso({ volumeId: 'cidata', files: [{ name: 'a\0b', data: '' }] })],
    ['empty name', () => buildIso({ volumeId: 'cidata', files: [{ name: '', data: '' }] })],
    ['dot dot', () => buildIso({ volumeId: 'cidata', files: [{ name: '..', data: '' }] })],
    ['65 characters', () => buildIso({ volumeId: 'cidata', files: [{ name: 'a'.repeat(65), data: '' }] })],
    ['volume id with a space', () => buildIso({ volumeId: 'ci data', files: seed })],
    ['empty volume id', () => buildIso({ volumeId: '', files: seed })],
    ['17-character volume id', () => buildIso({ volumeId: 'A'.repeat(17), files: seed })],
  ];
  for (const [what, build] of bad)
    assert.throws(build, (err) => err instanceof RumError && err.code === 'BUG', what);
  assert.doesNotThrow(() => buildIso({ volumeId: 'cidata', files: [{ name: 'a'.repeat(64), data: '' }] }));
});
