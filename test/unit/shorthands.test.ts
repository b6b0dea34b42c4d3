// Shorthands, mirrors and checksum lists: pure functions, no network.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RumError } from '../../src/errors.js';
import { didYouMean, isShorthand, resolveShorthand, shorthandNames } from '../../src/image/shorthands.js';
import { findSum, formatChecksum, parseChecksum, parseSums } from '../../src/image/sums.js';

test('each shorthand names the official amd64 cloud image and its checksum list', () => {
  assert.deepEqual(shorthandNames, ['debian-12', 'debian-13', 'ubuntu-22.04', 'ubuntu-24.04']);
  assert.deepEqual(resolveShorthand('debian-12'), {
    url: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2',
    sumsUrl: 'https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS',
    algo: 'sha512',
    fileName: 'debian-12-genericcloud-amd64.qcow2',
  });
  assert.deepEqual(resolveShorthand('debian-13'), {
    url: 'https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2',
    sumsUrl: 'https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS',
    algo: 'sha512',
    fileName: 'debian-13-genericcloud-amd64.qcow2',
  });
  assert.deepEqual(resolveShorthand('ubuntu-22.04'), {
    url: 'https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img',
    sumsUrl: 'https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS',
    algo: 'sha256',
    fileName: 'ubuntu-22.04-server-cloudimg-amd64.img',
  });
  assert.deepEqual(resolveShorthand('ubuntu-24.04'), {
    url: 'https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img',
    sumsUrl: 'https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS',
    algo: 'sha256',
    fileName: 'ubuntu-24.04-server-cloudimg-amd64.img',
  });
  assert.equal(isShorthand('ubuntu-24.04'), true);
  assert.equal(isShorthand('toString'), false); // not fooled by Object.prototype
  assert.throws(() => resolveShorthand('constructor'), RumError);
});

test('a mirror replaces the distribution root and keeps the rest of the path', () => {
  for (const mirror of ['http://10.0.0.5:8080/cloud', 'http://10.0.0.5:8080/cloud/']) {
    const d = resolveShorthand('debian-12', mirror);
    assert.equal(d.url, 'http://10.0.0.5:8080/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2');
    assert.equal(d.sumsUrl, 'http://10.0.0.5:8080/cloud/bookworm/latest/SHA512SUMS');
    const u = resolveShorthand('ubuntu-24.04', mirror);
    assert.equal(u.url, 'http://10.0.0.5:8080/cloud/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img');
    assert.equal(u.sumsUrl, 'http://10.0.0.5:8080/cloud/releases/24.04/release/SHA256SUMS');
  }
  assert.equal(
    resolveShorthand('debian-13', 'https://m.example').url,
    'https://m.example/trixie/latest/debian-13-genericcloud-amd64.qcow2',
  );
  assert.equal(resolveShorthand('debian-13', '').url, resolveShorthand('debian-13').url); // an empty env var is no mirror
});

test('an unusable mirror is a config error that says why', () => {
  for (const [mirror, why] of [
    ['not a url', /must be an http\(s\) URL/],
    ['ftp://m.example/', /must be an http\(s\) URL/],
    ['https://m.example/?x=1', /query \(\?\) or a fragment/],
    ['https://m.example/?', /query \(\?\) or a fragment/],
    ['http:///m.example/', /scheme|host/],
    ['https://user:pw@m.example/', /user name or password/],
  ] as const) {
    assert.throws(
      () => resolveShorthand('debian-12', mirror),
      (err) => err instanceof RumError && err.code === 'CONFIG_INVALID' && why.test(err.message) && err.hint !== undefined && !err.message.includes('pw@'),
      mirror,
    );
  }
});

test('an unknown shorthand suggests the nearest one', () => {
  const hintFor = (name: string) => {
    try {
      resolveShorthand(name);
    } catch (err) {
      assert.ok(err instanceof RumError);
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.match(err.message, new RegExp(`"${name.replace('.', '\\.')}"`));
      return err.hint ?? '';
    }
    assert.fail(`${name} resolved`);
  };
  assert.match(hintFor('debian12'), /^did you mean debian-12\?/);
  assert.match(hintFor('Ubuntu-24.04'), /^did you mean ubuntu-24\.04\?/);
  assert.match(hintFor('ubuntu-24.10'), /^did you mean ubuntu-24\.04\?/);
  assert.match(hintFor('fedora-40'), /^known shorthands: debian-12, debian-13, ubuntu-22\.04, ubuntu-24\.04/);
  assert.equal(didYouMean('debain-13', shorthandNames), 'debian-13');
});

const H256 = 'ab'.repeat(32);
const H512 = 'cd'.repeat(64);

test('checksum lists: GNU text and binary mode, BSD tags, noise skipped', () => {
  const text = [
    '-----BEGIN PGP SIGNED MESSAGE-----',
    'Hash: SHA256',
    '',
    `${H256} *ubuntu-24.04-server-cloudimg-amd64.img`,
    `${H512}  debian-12-genericcloud-amd64.qcow2`,
    `SHA512 (debian-12-nocloud-amd64.raw) = ${H512.toUpperCase()}`,
    `SHA256 (with space.img) = ${H256}`,
    `\\${H256}  back\\\\slash.img`,
    `${H256}  ./dotted.img`,
    '# a comment',
    `${'ab'.repeat(20)}  sha1-is-ignored.img`,
    `${H256}  crlf.img\r`,
    'garbage line',
  ].join('\n');
  assert.deepEqual(parseSums(text), [
    { name: 'ubuntu-24.04-server-cloudimg-amd64.img', hex: H256, algo: 'sha256' },
    { name: 'debian-12-genericcloud-amd64.qcow2', hex: H512, algo: 'sha512' },
    { name: 'debian-12-nocloud-amd64.raw', hex: H512, algo: 'sha512' },
    { name: 'with space.img', hex: H256, algo: 'sha256' },
    { name: 'back\\slash.img', hex: H256, algo: 'sha256' },
    { name: './dotted.img', hex: H256, algo: 'sha256' },
    { name: 'crlf.img', hex: H256, algo: 'sha256' },
  ]);
  assert.equal(findSum(text, 'ubuntu-24.04-server-cloudimg-amd64.img', 'sha256'), H256);
  assert.equal(findSum(text, 'debian-12-nocloud-amd64.raw', 'sha512'), H512);
  assert.equal(findSum(text, 'dotted.img', 'sha256'), H256);
  assert.equal(findSum(text, 'debian-12-genericcloud-amd64.qcow2', 'sha256'), undefined); // wrong algo
  assert.equal(findSum(text, 'absent.img', 'sha256'), undefined);
});

test('a list that gives one file two digests is refused; the same digest twice is fine', () => {
  const twice = `${H256}  a.img\n${H256} *a.img\n`;
  assert.equal(findSum(twice, 'a.img', 'sha256'), H256);
  const conflict = `${H256}  a.img\n${'ef'.repeat(32)}  a.img\n`;
  assert.throws(() => findSum(conflict, 'a.img', 'sha256'), (err) => err instanceof RumError && err.code === 'IMAGE');
});

test('checksums in image.checksum form', () => {
  assert.deepEqual(parseChecksum(`sha256:${H256.toUpperCase()}`), { algo: 'sha256', hex: H256 });
  assert.equal(formatChecksum(parseChecksum(`sha512:${H512}`)), `sha512:${H512}`);
  for (const bad of [`sha256:${H512}`, `md5:${H256}`, H256, 'sha256:xyz']) {
    assert.throws(() => parseChecksum(bad), RumError);
  }
});
