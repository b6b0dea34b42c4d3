// rum's key pairs: every generated key loads, in ssh2 and in OpenSSH. ssh2 alone makes an
// unloadable ed25519 key about once in a few hundred (a 31-byte public key).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { run } from '../helpers/rig.js';

test('1000 generated key pairs all load; OpenSSH derives the same public key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rum-keys-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (let i = 0; i < 1000; i++) {
    const k = await generateKeyPair(`k${i}`);
    assert.ok(!(ssh2.utils.parseKey(k.private) instanceof Error), `key ${i} loads in ssh2`);
    if (i % 250 === 0) {
      const f = join(dir, `k${i}`);
      await writeFile(f, k.private, { mode: 0o600 });
      assert.equal((await run('ssh-keygen', ['-y', '-f', f])).trim().split(' ').slice(0, 2).join(' '), k.public.split(' ').slice(0, 2).join(' '));
    }
  }
});
