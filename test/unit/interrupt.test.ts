// Ctrl-C during a run: the real CLI downloading an image from a local server that stalls
// mid-file. SIGINT ends it with status 130, nothing half-written is where it would be trusted,
// the state record stays valid, and the next run resumes the download and completes.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { rumBin, run, scratchProject } from '../helpers/rig.js';

test('SIGINT mid-download: exit 130, no trusted partial file, and the next run resumes', async (t) => {
  const p = await scratchProject(t, { image: { base: 'debian-12' } });
  const img = join(p.root, 'src.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1G']);
  const body = Buffer.concat([await readFile(img), Buffer.alloc(3 * 2 ** 20, 7)]); // padded: a few MB
  const sha = createHash('sha256').update(body).digest('hex');
  let stall = true;
  const ranges: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    ranges.push(req.headers.range);
    const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
    res.writeHead(start ? 206 : 200, {
      'content-length': body.length - start,
      ...(start ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
      'accept-ranges': 'bytes',
    });
    if (!stall) return res.end(body.subarray(start));
    res.write(body.subarray(start, start + 2 ** 20)); // 1 MiB, then nothing: a stalled transfer
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)).then(() => server.closeAllConnections()));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/img.qcow2`;
  await p.writeConfig({ image: { base: url, checksum: `sha256:${sha}` } });

  const child = spawn(process.execPath, [rumBin, 'build', 'base-image'], { cwd: p.dir, env: p.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Bounded wait for the download to be under way (its progress line), then Ctrl-C.
  for (let i = 0; i < 100 && !/downloading/.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(stderr, /downloading/);
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted/);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');

  const images = join(p.env.XDG_CACHE_HOME!, 'rum', 'images');
  const trusted = (await readdir(images).catch(() => [])).filter((f) => f.endsWith('.img'));
  assert.deepEqual(trusted, [], 'no image entered the cache unverified');
  const state = JSON.parse(await readFile(p.vmFile('state.json'), 'utf8').catch(() => '{"nodes":{}}'));
  assert.equal(state.nodes['base-image'], undefined, 'the node reads as not built');

  stall = false;
  const again = await p.rumJson('build', 'base-image');
  assert.deepEqual(again.built, ['base-image']);
  assert.match(String(ranges.at(-1)), /^bytes=[1-9]\d*-$/, 'the second run resumed with a Range request');
});
