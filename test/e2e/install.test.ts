// rum as an npm package: what `npm pack` puts in the tarball, installing it (plain, with
// --ignore-scripts, with --omit=optional) quietly into an empty prefix, `npm link` from the
// checkout, and the README's Install section followed line by line as far as this sandbox
// allows (the apt line's packages, the group, the network, the install as an ordinary user with
// a prefix of their own, then `rum doctor`).
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { TEST_USER, bootSkipReason, inNs, repoRoot, scratchDir, userIds, virsh } from './env.js';

const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
const tarball = join(repoRoot, 'dist', `rum-${pkg.version}.tgz`);

/** Lines an install must not print: npm's warnings and errors, a native build, its failure. */
const ALARMING = /warn|err|gyp|fail|deprecated|vulnerab/i;

async function npmInstall(t: TestContext, flags: string[]): Promise<string> {
  const prefix = await scratchDir(t);
  const r = await execa('npm', ['install', '--global', '--prefix', prefix, '--no-fund', '--no-audit', ...flags, tarball], { all: true, reject: false, cwd: prefix });
  assert.equal(r.exitCode, 0, String(r.all));
  assert.doesNotMatch(String(r.all), ALARMING, `npm install ${flags.join(' ')} printed:\n${r.all}`);
  return prefix;
}

test('npm pack: the tarball holds what rum runs and nothing else', async (t) => {
  const entries = (await execa('tar', ['-tzvf', tarball])).stdout.split('\n').filter(Boolean);
  const files = entries.map((l) => l.split(/\s+/).pop()!.replace(/^package\//, ''));
  const allowed = /^(bin\/rum|bin\/rum\.js|dist\/bundle\/[\w.-]+\.js|dist\/bundle\/THIRD-PARTY-LICENSES\.txt|dist\/rum\.schema\.json|README\.md|LICENSE|package\.json)$/;
  assert.deepEqual(files.filter((f) => !allowed.test(f)), [], 'only the bundle, schema, launcher, README, LICENSE');
  for (const must of ['bin/rum', 'bin/rum.js', 'dist/bundle/main.js', 'dist/bundle/control-master.js', 'dist/rum.schema.json', 'LICENSE', 'README.md'])
    assert.ok(files.includes(must), `${must} is in the tarball`);
  const manifest = JSON.parse((await execa('tar', ['-xzOf', tarball, 'package/package.json'])).stdout);
  assert.equal(manifest.dependencies, undefined, 'everything is bundled: no dependencies to fetch');
  assert.match(manifest.engines.node, /^>=20/);
  const size = (await execa('stat', ['-c', '%s', tarball])).stdout;
  t.diagnostic(`rum-${pkg.version}.tgz: ${(Number(size) / 1024).toFixed(0)} KiB, ${files.length} files`);
});

for (const flags of [[], ['--ignore-scripts'], ['--omit=optional']]) {
  test(`npm install --global ${flags.join(' ') || '(plain)'}: a working rum, nothing alarming printed`, async (t) => {
    const prefix = await npmInstall(t, flags);
    const v = await execa(join(prefix, 'bin/rum'), ['--version']);
    assert.match(v.stdout, new RegExp(`rum, ${pkg.version.replace(/\./g, '\\.')}`));
    // ssh2, bundled without its native binding, and the chunks' __dirname: the VM's keys made
    // and parsed back (rum keeps a pair only once it loads), by the name on PATH.
    const proj = await scratchDir(t);
    await writeFile(join(proj, 'rum.yaml'), 'name: install-check\nimage: { base: debian-12 }\n');
    const env = { PATH: `${join(prefix, 'bin')}:/usr/bin:/bin`, XDG_DATA_HOME: join(proj, 'data'), XDG_CACHE_HOME: join(proj, 'cache') };
    const keys = await execa('rum', ['build', 'ssh-keys', '--json'], { cwd: proj, env, extendEnv: false, reject: false });
    assert.equal(keys.exitCode, 0, `${keys.stdout}\n${keys.stderr}`);
    assert.deepEqual(JSON.parse(keys.stdout).built, ['ssh-keys']);
  });
}

test('npm link from the (built) checkout: rum on PATH runs the checkout', async (t) => {
  const prefix = await scratchDir(t);
  const r = await execa('npm', ['link', '--no-fund', '--no-audit', '--ignore-scripts'], { cwd: repoRoot, env: { npm_config_prefix: prefix }, all: true, reject: false });
  assert.equal(r.exitCode, 0, String(r.all));
  const v = await execa(join(prefix, 'bin/rum'), ['--version']);
  assert.match(v.stdout, /^rum, /);
});

test("the README's Install section, followed as an ordinary user on this Debian 12 sandbox", async (t) => {
  const why = bootSkipReason({ session: true });
  if (why) return t.skip(why);
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const block = /<!-- install:debian -->\n```sh\n([\s\S]*?)```\n<!-- \/install:debian -->/.exec(readme)?.[1];
  assert.ok(block, 'the README has the marked Install block');
  const lines = block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l && !l.startsWith('#'));
  const { home } = userIds(TEST_USER);
  const userPrefix = await scratchDir(t, { owner: TEST_USER }); // stands in for ~/.local
  const dir = await scratchDir(t, { owner: TEST_USER });
  await copyFile(tarball, join(dir, `rum-${pkg.version}.tgz`));
  const done: string[] = [];
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if ((m = /^sudo apt install (.+)$/.exec(line))) {
      // Installed here by scripts/install-deps.sh from Debian 12's own archive: the names are real.
      for (const p of m[1]!.split(/\s+/)) {
        const q = await execa('dpkg-query', ['-W', '-f=${Status}', p], { reject: false });
        assert.equal(q.stdout, 'install ok installed', `${p} is a Debian 12 package, installed here`);
      }
    } else if (/^sudo usermod -aG libvirt \$USER$/.test(line)) {
      assert.match((await execa('id', ['-nG', TEST_USER])).stdout, /\blibvirt\b/, 'test/e2e/env.sh ran this line for the test user');
    } else if ((m = /^sudo virsh --connect (\S+) (net-autostart|net-start) default$/.exec(line))) {
      const r = await execa('virsh', ['--connect', m[1]!, m[2]!, 'default'], { reject: false, all: true });
      assert.ok(r.exitCode === 0 || /already active/.test(String(r.all)), String(r.all));
    } else if ((m = /^npm install --global (\.\/rum-[\d.]+\.tgz)$/.exec(line))) {
      assert.equal(m[1], `./rum-${pkg.version}.tgz`, "the README names this version's tarball");
      const r = await inNs('npm', ['install', '--global', '--no-fund', '--no-audit', m[1]!], {
        user: TEST_USER, cwd: dir, env: { npm_config_prefix: userPrefix, npm_config_cache: join(userPrefix, '.npm') }, all: true, reject: false,
      });
      assert.equal(r.exitCode, 0, String(r.all));
      assert.doesNotMatch(String(r.all), ALARMING, String(r.all));
    } else if (line === 'rum doctor') {
      const r = await inNs(join(userPrefix, 'bin/rum'), ['doctor'], {
        user: TEST_USER, env: { PATH: `${join(userPrefix, 'bin')}:/usr/local/bin:/usr/bin:/bin`, HOME: home }, all: true, reject: false,
      });
      t.diagnostic(String(r.all));
      assert.match(String(r.all), /✓ libvirt/, 'the installed rum reaches qemu:///system as the user');
      assert.doesNotMatch(String(r.all), /✗ (libvirt|group|network|qemu|ssh)/);
    } else {
      assert.fail(`the test does not know how to follow this README line: ${line}`);
    }
    done.push(line);
  }
  assert.equal(done.length, lines.length);
  assert.match(await virsh(['net-info', 'default']), /Autostart:\s+yes/);
});
