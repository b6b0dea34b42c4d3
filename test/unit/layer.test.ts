// Provisioned layers without a guest: the key reads exactly its inputs; the builder's user-data
// is what cloud-init accepts and PyYAML reads back; the console tells how a build went; the
// store finds only a whole layer.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildOutcome, consoleExcerpt, currentStep, layerUserData } from '../../src/cloudinit/layer-build.js';
import { initDigests } from '../../src/graph/digest.js';
import { layerKey, LayerStore } from '../../src/image/layer-store.js';
import { pyyamlLoad } from '../helpers/pyyaml.js';
import { run } from '../helpers/rig.js';

const inputs = { base: '0123456789abcdef', basePath: '/cache/sha512-0123.img', packages: ['git', 'curl'], aptSources: ['deb [trusted=yes] http://10.0.2.2:8080 ./'], script: 'echo hi\n' };

test('the layer key changes with each input it reads, and with nothing else', async () => {
  await initDigests();
  const k = layerKey(inputs);
  assert.equal(layerKey({ ...inputs }), k, 'the same inputs give the same key');
  assert.equal(layerKey({ ...inputs, packages: [...inputs.packages] }), k);
  const changed = [
    { ...inputs, base: 'fedcba9876543210' },
    { ...inputs, basePath: '/elsewhere/same-bytes.qcow2' },
    { ...inputs, packages: ['git'] },
    { ...inputs, packages: ['curl', 'git'] }, // apt installs both either way, but a reordered list is a new request
    { ...inputs, aptSources: ['deb http://other ./'] },
    { ...inputs, aptSources: undefined },
    { ...inputs, script: 'echo hi there\n' },
    { ...inputs, script: undefined },
  ];
  const keys = changed.map(layerKey);
  assert.equal(new Set([k, ...keys]).size, keys.length + 1, 'every change gives a key of its own');
});

test("the builder's user-data passes cloud-init schema and reads back as written", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rum-layer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const script = "#!/bin/sh\necho 'quotes: \" ` $HOME' # not a comment in YAML\non: yes\n2001-01-01\n";
  const text = layerUserData({ packages: ['inotify-tools', 'git=1:2.39.2-1'], aptSources: inputs.aptSources, script });
  await writeFile(join(dir, 'user-data'), text);
  assert.match(await run('cloud-init', ['schema', '--config-file', join(dir, 'user-data')]), /Valid (cloud-config|schema)/);
  const [loaded] = pyyamlLoad([text]);
  assert.ok(loaded && 'value' in loaded, JSON.stringify(loaded));
  const doc = loaded.value as Record<string, unknown>;
  const files = doc.write_files as { path: string; content: string; permissions: string }[];
  assert.equal(files.find((f) => f.path === '/var/lib/rum-layer/image.sh')?.content, script);
  assert.equal(files.find((f) => f.path === '/var/lib/rum-layer/packages')?.content, 'inotify-tools\ngit=1:2.39.2-1\n');
  assert.deepEqual(doc.runcmd, [['/var/lib/rum-layer/build.sh']]);
  assert.deepEqual(doc.cloud_config_modules, ['apt-configure', 'runcmd']);
  assert.deepEqual(doc.cloud_final_modules, ['scripts-user']);
  assert.deepEqual(doc.users, [[]]);
  assert.equal((doc.apt as { sources_list: string }).sources_list, `${inputs.aptSources[0]}\n`);
  const build = files.find((f) => f.path === '/var/lib/rum-layer/build.sh')!.content;
  // The seal: nothing of the builder's instance is left for the VMs.
  for (const line of [': > /etc/machine-id', 'cloud-init clean --logs', '/etc/ssh/ssh_host_*', 'rm -rf /var/lib/apt/lists/*', 'fstrim'])
    assert.ok(build.includes(line), `the build script seals: ${line}`);
  // Only a script: no packages file, no apt sources.
  const only = pyyamlLoad([layerUserData({ packages: [], script: 'true' })])[0] as { value: Record<string, unknown> };
  assert.deepEqual((only.value.write_files as { path: string }[]).map((f) => f.path).sort(), ['/var/lib/rum-layer/build.sh', '/var/lib/rum-layer/image.sh']);
  assert.deepEqual(only.value.cloud_config_modules, ['runcmd']);
});

test("the builder's console tells a sealed build from a failed or cut one", () => {
  const noise = '[  OK  ] Started ssh.service\r\n';
  assert.deepEqual(buildOutcome(`${noise}rum-layer: step: apt-get update\nrum-layer: step: sealing\r\n[ 12.3] rum-layer: sealed\n`), { ok: true });
  assert.deepEqual(buildOutcome(`rum-layer: step: installing nope\nE: Unable to locate package nope\nrum-layer: failed: apt-get install exited 100\n`), {
    ok: false,
    why: 'apt-get install exited 100',
  });
  assert.deepEqual(buildOutcome('rum-layer: step: provision.image\nKernel panic'), { ok: false, why: 'the builder stopped during "provision.image"' });
  assert.deepEqual(buildOutcome(noise), { ok: false, why: 'the builder stopped before its build script ran' });
  assert.equal(currentStep('rum-layer: step: apt-get update\nGet:1 ...\nrum-layer: step: installing git \n'), 'installing git');
  assert.equal(currentStep(noise), undefined);
  // A failure is shown up to rum's last line, not the shutdown after it.
  const failed = `${noise}E: Unable to locate package nope\nrum-layer: failed: apt-get install exited 100\n[ 61.4] systemd-shutdown[1]: Syncing filesystems\nreboot: Power down\n`;
  assert.equal(consoleExcerpt(failed, 2), 'E: Unable to locate package nope\nrum-layer: failed: apt-get install exited 100');
  assert.equal(consoleExcerpt('a\nb\nc\n', 2), 'b\nc', 'no line of rum\'s: the last lines');
});

test('the store finds a layer only once its file and its record are both there', async (t) => {
  await initDigests();
  const cache = await mkdtemp(join(tmpdir(), 'rum-layers-'));
  t.after(async () => {
    await chmod(cache, 0o755).catch(() => undefined);
    await rm(cache, { recursive: true, force: true });
  });
  const store = new LayerStore(cache);
  const key = layerKey(inputs);
  assert.equal(await store.lookup(key), undefined);
  const lock = await store.lock(key, {});
  const built = join(cache, 'built.qcow2');
  await writeFile(built, 'a disk');
  const got = await store.commit(built, { key, base: { path: '/base.img', digest: inputs.base }, packages: inputs.packages, virtualSize: 4 * 2 ** 30 });
  await lock.release();
  assert.match(got.path, new RegExp(`/layers/${key}-[0-9a-f]{8}\\.qcow2$`));
  assert.equal((await stat(got.path)).mode & 0o777, 0o444, 'read-only');
  assert.deepEqual((await store.lookup(key))?.path, got.path);
  // A damaged record: not in the cache (a new build writes it afresh).
  const record = join(cache, 'layers', `${key}.json`);
  const text = await readFile(record, 'utf8');
  await writeFile(record, text.slice(0, 20));
  assert.equal(await store.lookup(key), undefined);
  // A record naming a file outside its key's names is not trusted.
  await writeFile(record, text.replace(/"file": "[^"]+"/, '"file": "../../etc/passwd"'));
  assert.equal(await store.lookup(key), undefined);
  await writeFile(record, text);
  await rm(got.path, { force: true });
  assert.equal(await store.lookup(key), undefined, 'a record whose file is gone');
});
