// A libvirt URI's daemon is read from its path, whatever its transport, host or parameters.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLocalUri, isSessionUri, uriDaemon } from '../../src/libvirt/uri.js';

test('session or system: by the path, parameters and all', () => {
  const cases: [string, 'session' | 'system' | undefined][] = [
    ['qemu:///session', 'session'],
    ['qemu:///session?socket=/x', 'session'],
    ['qemu+ssh://h/session?keyfile=/k', 'session'],
    ['qemu:///system', 'system'],
    ['qemu:///system?mode=legacy', 'system'],
    ['qemu+ssh://user@h:22/system', 'system'],
    ['test:///default', undefined],
    ['qemu:///sessionx', undefined],
    ['not a uri', undefined],
  ];
  for (const [uri, daemon] of cases) {
    assert.equal(uriDaemon(uri), daemon, uri);
    assert.equal(isSessionUri(uri), daemon === 'session', uri);
  }
});

test('local: a qemu daemon on this machine, over its default or a given socket', () => {
  for (const uri of ['qemu:///system', 'qemu:///session?socket=/x', 'qemu+unix:///system?socket=/x']) assert.equal(isLocalUri(uri), true, uri);
  for (const uri of ['qemu+ssh://h/system', 'qemu+tcp://h/session', 'test:///default', 'nonsense']) assert.equal(isLocalUri(uri), false, uri);
});
