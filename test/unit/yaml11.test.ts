// cloud-init reads rum's documents with PyYAML (YAML 1.1). Every string rum writes, from a corpus
// of what YAML 1.1 resolves to something else or reads as a line break, plus generated strings,
// must load back exactly: asserted by loading with PyYAML itself, never by searching the text.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { metaDataDocument, userDataDocument, userDataObject, type UserDataSpec } from '../../src/cloudinit/documents.js';
import { yaml11 } from '../../src/cloudinit/yaml11.js';
import { pyyamlLoad } from '../helpers/pyyaml.js';
import { tally } from '../helpers/tally.js';

// Strings YAML 1.1's resolvers turn into other types, indicators, and characters PyYAML refuses
// raw or takes for line breaks.
const NAMED = [
  ...['y', 'Y', 'yes', 'Yes', 'YES', 'n', 'N', 'no', 'No', 'NO', 'on', 'On', 'ON', 'off', 'Off', 'OFF', 'true', 'True', 'FALSE'],
  ...['', '~', 'null', 'Null', 'NULL', '=', '<<', '-', '?', ':', '#', '|', '>', '*a', '&a', '!a', '!!str x', '%YAML 1.1', '@a', '`a'],
  ...['0', '-0', '+1', '017', '0o17', '0b1010', '0x10', '0xFF', '1_000', '190:20:30', '12:30', '-1:30', '1e3', '1E3', '6.8523015e+5', '685.230_15e+03', '.5', '+.5', '1.', '.inf', '-.Inf', '.NaN'],
  ...['2001-12-14', '2001-12-14t21:59:43.10-05:00', '2001-12-14 21:59:43.10 -5', '2002-12-14 21:59:43'],
  ...['- a', ': a', '? a', 'a: b', 'a #b', ' a', 'a ', ' ', '\t', 'a\tb', '{a}', '[a]', 'a, b', '---', '...', '--- a', "'", '"', '\\', 'a\\nb'],
  ...['a\nb', 'a\n', '\n', '\na', 'a\n\n', 'a \nb', 'a\r\nb', 'a\rb', '\r', '  lead\nb', 'a\n  b\n'],
  ...['\x85', 'a\x85b', 'a\u2028b', 'a\u2029b', '\u2028bootcmd: [reboot]', 'x\x85runcmd:\x85  - reboot', '\ufeffa', 'a\ufeff', 'a\ufffeb', 'a\uffffb'],
  ...Array.from({ length: 32 }, (_, i) => `c${String.fromCharCode(i)}d`),
  ...Array.from({ length: 33 }, (_, i) => `c${String.fromCharCode(0x7f + i)}d`),
  ...['é', '\u00a0', 'a\u00a0', '✓', '\u{1F600}', 'ü\n✓', `#!/bin/sh\necho "$HOME" '$x' \`id\`\n`, 'x'.repeat(5000), 'line\n'.repeat(500)],
];

// Deterministic generated strings: a seeded generator over an alphabet weighted to the hazards.
function generated(count: number, seed: number): string[] {
  const alphabet = ['a', 'b', '0', '1', ' ', ' ', '\n', '\t', ':', '#', '-', '?', "'", '"', '\\', '{', '[', ',', '&', '*', '!', '|', '>', '%', '@', '.', '_', 'e', 'x', 'y', 'o', '~', '\r', '\x00', '\x1b', '\x7f', '\x85', '\x9f', '\u2028', '\u2029', '\ufeff', 'é', '\u{1F600}'];
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s);
  return Array.from({ length: count }, () => Array.from({ length: next() % 24 }, () => alphabet[next() % alphabet.length]).join(''));
}

const CORPUS = [...NAMED, ...generated(1500, 16)];
// Each string goes into every field of a whole user-data document: fewer generated ones there.
const DOCUMENT_CORPUS = [...NAMED, ...generated(300, 61)];

test('every string of the corpus loads back from YAML 1.1 exactly, as a list and as map values', () => {
  const docs = [yaml11(CORPUS), yaml11(Object.fromEntries(CORPUS.map((v, i) => [`k${i}`, v])))];
  const [list, map] = pyyamlLoad(docs);
  assert.ok(list && 'value' in list, `PyYAML refused the list: ${JSON.stringify(list)}`);
  const got = list.value as unknown[];
  let exact = 0;
  CORPUS.forEach((v, i) => {
    assert.deepEqual(got[i], v, `corpus[${i}] ${JSON.stringify(v)} came back as ${JSON.stringify(got[i])}`);
    exact++;
  });
  assert.deepEqual(map && 'value' in map && map.value, Object.fromEntries(CORPUS.map((v, i) => [`k${i}`, v])));
  tally('input', 'strings through YAML 1.1 (PyYAML)', CORPUS.length, exact);
});

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
function spec(v: string): UserDataSpec {
  return {
    hostname: v,
    user: v,
    uid: 1000,
    authorizedKeys: [`${KEY} ${v}`],
    hostKey: { private: `-----BEGIN OPENSSH PRIVATE KEY-----\n${v}\n-----END OPENSSH PRIVATE KEY-----\n`, public: `${KEY} ${v}` },
    aptSources: [`deb http://10.0.2.2/ ${v}`],
    system: v,
    boot: v,
    mounts: [{ tag: 'rum0', target: `/w/${v}`, type: 'virtiofs', readonly: false }],
  };
}

test('user-data and meta-data carry every field exactly as cloud-init reads them, with no key added', () => {
  // The documents' own validation happens in rum.yaml's schema; here the serialiser alone must
  // keep any string inside its scalar.
  const specs = DOCUMENT_CORPUS.map(spec);
  const docs = specs.flatMap((s) => [userDataDocument(s), metaDataDocument({ instanceId: `rum-x-1`, hostname: s.hostname })]);
  const loaded = pyyamlLoad(docs);
  specs.forEach((s, i) => {
    const user = loaded[2 * i]!;
    const meta = loaded[2 * i + 1]!;
    assert.ok('value' in user, `user-data for ${JSON.stringify(DOCUMENT_CORPUS[i])}: ${JSON.stringify(user)}`);
    assert.deepEqual(user.value, JSON.parse(JSON.stringify(userDataObject(s))), `user-data for ${JSON.stringify(DOCUMENT_CORPUS[i])}`);
    assert.deepEqual('value' in meta && meta.value, { 'instance-id': 'rum-x-1', 'local-hostname': s.hostname });
  });
  assert.ok(userDataDocument(specs[0]!).startsWith('#cloud-config\n'));
  tally('input', 'config strings through user-data and meta-data (PyYAML)', DOCUMENT_CORPUS.length, DOCUMENT_CORPUS.length);
});
