// The domain XML: valid against libvirt's own schema (virt-xml-validate), every value read back
// intact by a real XML parser (xmllint), control characters refused, and the owner mark found
// again after libvirt re-serialises it (virsh's in-process test driver: no daemon, no QEMU).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { RumError } from '../../src/errors.js';
import { domainUuid } from '../../src/libvirt/domain-uuid.js';
import { domainSpecProblems, domainXml, readOwnerMark, RUM_XMLNS, type DomainSpec } from '../../src/libvirt/domain-xml.js';
import { escapeAttr, escapeText } from '../../src/libvirt/xml.js';
import { tally } from '../helpers/tally.js';

function spec(over: Partial<DomainSpec> = {}): DomainSpec {
  return {
    name: 'rum-demo',
    uuid: '8f2c7d5e-1b3a-4c6d-9e8f-0a1b2c3d4e5f',
    memoryBytes: 2 * 2 ** 30,
    cpus: 2,
    domainType: 'qemu',
    machine: 'q35',
    overlayPath: '/var/lib/rum/demo/disk.qcow2',
    overlayFormat: 'qcow2',
    seedIsoPath: '/var/lib/rum/demo/seed.iso',
    consoleLogPath: '/var/lib/rum/demo/console.log',
    network: { mode: 'nat', network: 'default', mac: '52:54:00:12:34:56' },
    mounts: [],
    owner: { configFile: '/home/me/proj/rum.yaml', vmDir: '/var/lib/rum/demo' },
    ...over,
  };
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-domain-xml-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes the XML, checks it against libvirt's schema, returns a query function over it. */
async function validated(t: TestContext, xml: string, file = 'domain.xml') {
  const path = join(await scratch(t), file);
  await writeFile(path, xml);
  const v = await execa('virt-xml-validate', [path, 'domain'], { reject: false, all: true });
  assert.equal(v.exitCode, 0, `virt-xml-validate failed:\n${v.all}\n${xml}`);
  const xpath = async (expr: string): Promise<string> => {
    const r = await execa('xmllint', ['--xpath', expr, path], { stripFinalNewline: false });
    return r.stdout.replace(/\n$/, ''); // xmllint ends a string() result with one newline
  };
  return { path, xpath, count: async (expr: string) => Number(await xpath(`count(${expr})`)) };
}

test('nat: valid, q35, TCG cpu, seed as a virtio-scsi cdrom, no display', async (t) => {
  const q = await validated(t, domainXml(spec()));
  assert.equal(await q.xpath('string(/domain/@type)'), 'qemu');
  assert.equal(await q.xpath('string(/domain/os/type/@machine)'), 'q35');
  assert.equal(await q.xpath('string(/domain/os/type)'), 'hvm');
  assert.equal(await q.xpath('string(/domain/os/boot/@dev)'), 'hd');
  assert.equal(await q.xpath('string(/domain/memory)'), String(2 * 2 ** 20));
  assert.equal(await q.xpath('string(/domain/memory/@unit)'), 'KiB');
  assert.equal(await q.xpath('string(/domain/vcpu)'), '2');
  assert.equal(await q.xpath('string(/domain/cpu/@mode)'), 'maximum');
  assert.equal(await q.xpath('string(/domain/on_poweroff)'), 'destroy');
  assert.equal(await q.count('/domain/features/acpi'), 1);
  assert.equal(await q.count('/domain/features/apic'), 1);
  const disk = '/domain/devices/disk[@device="disk"]';
  assert.equal(await q.xpath(`string(${disk}/source/@file)`), '/var/lib/rum/demo/disk.qcow2');
  assert.equal(await q.xpath(`string(${disk}/driver/@type)`), 'qcow2');
  assert.equal(await q.xpath(`string(${disk}/driver/@discard)`), 'unmap');
  assert.equal(await q.xpath(`string(${disk}/target/@bus)`), 'virtio');
  const cdrom = '/domain/devices/disk[@device="cdrom"]';
  assert.equal(await q.xpath(`string(${cdrom}/source/@file)`), '/var/lib/rum/demo/seed.iso');
  assert.equal(await q.xpath(`string(${cdrom}/target/@bus)`), 'scsi');
  assert.equal(await q.count(`${cdrom}/readonly`), 1);
  assert.equal(await q.count('/domain/devices/controller[@type="scsi" and @model="virtio-scsi"]'), 1);
  assert.equal(await q.count('/domain/devices/controller[@type="sata"]'), 0);
  assert.equal(await q.xpath('string(/domain/devices/interface[@type="network"]/source/@network)'), 'default');
  assert.equal(await q.xpath('string(/domain/devices/interface/mac/@address)'), '52:54:00:12:34:56');
  assert.equal(await q.xpath('string(/domain/devices/interface/model/@type)'), 'virtio');
  assert.equal(await q.xpath('string(/domain/devices/serial[@type="pty"]/log/@file)'), '/var/lib/rum/demo/console.log');
  assert.equal(await q.xpath('string(/domain/devices/serial/log/@append)'), 'on');
  assert.equal(await q.count('/domain/devices/console[@type="pty"]'), 1);
  assert.equal(await q.xpath('string(/domain/devices/rng[@model="virtio"]/backend)'), '/dev/urandom');
  assert.equal(await q.count('/domain/devices/memballoon[@model="virtio"]'), 1);
  assert.equal(await q.count('/domain/devices/graphics'), 0);
  assert.equal(await q.count('/domain/devices/video'), 1);
  assert.equal(await q.xpath('string(/domain/devices/video/model/@type)'), 'none');
  assert.equal(await q.count('/domain/memoryBacking'), 0, 'no shared memory without virtiofs');
  assert.equal(await q.count("//*[local-name()='commandline']"), 0);
  assert.equal(await q.xpath(`string(/domain/metadata/*[local-name()='vm' and namespace-uri()='${RUM_XMLNS}']/*[local-name()='config'])`), '/home/me/proj/rum.yaml');
});

test('kvm: host-passthrough cpu', async (t) => {
  const q = await validated(t, domainXml(spec({ domainType: 'kvm' })));
  assert.equal(await q.xpath('string(/domain/@type)'), 'kvm');
  assert.equal(await q.xpath('string(/domain/cpu/@mode)'), 'host-passthrough');
});

test('runAs: QEMU as the invoking user through a static DAC label, nothing relabelled', async (t) => {
  const q = await validated(t, domainXml(spec({ runAs: { uid: 1000, gid: 1001 } })));
  assert.equal(await q.xpath("string(/domain/seclabel[@model='dac']/@type)"), 'static');
  assert.equal(await q.xpath("string(/domain/seclabel[@model='dac']/@relabel)"), 'no');
  assert.equal(await q.xpath("string(/domain/seclabel[@model='dac']/label)"), '+1000:+1001');
  assert.equal(await (await validated(t, domainXml(spec()))).count('/domain/seclabel'), 0);
  assert.throws(() => domainXml(spec({ runAs: { uid: -1, gid: 0 } })), /runAs/);
});

test('keepOwners: no image of the chain is relabelled, the base image named as the backing store', async (t) => {
  const q = await validated(t, domainXml(spec({ keepOwners: { chain: [{ path: '/home/u/.cache/rum/images/sha512-x.img', format: 'qcow2' }] } })));
  const disk = "/domain/devices/disk[@device='disk']";
  assert.equal(await q.xpath(`string(${disk}/source/seclabel[@model='dac']/@relabel)`), 'no');
  assert.equal(await q.xpath(`string(${disk}/backingStore/source/@file)`), '/home/u/.cache/rum/images/sha512-x.img');
  assert.equal(await q.xpath(`string(${disk}/backingStore/format/@type)`), 'qcow2');
  assert.equal(await q.xpath(`string(${disk}/backingStore/source/seclabel/@relabel)`), 'no');
  assert.equal(await q.count(`${disk}/backingStore/backingStore/*`), 0, 'the chain ends at the base image');
  assert.equal(await q.xpath("string(/domain/devices/disk[@device='cdrom']/source/seclabel/@relabel)"), 'no');
  const plain = await validated(t, domainXml(spec()));
  assert.equal(await plain.count('//seclabel'), 0);
  assert.equal(await plain.count('//backingStore'), 0);
  assert.throws(() => domainXml(spec({ keepOwners: { chain: [{ path: 'rel.img', format: 'qcow2' }] } })), /absolute/);
  assert.throws(() => domainXml(spec({ keepOwners: { chain: [] } })), /names no backing file/);
});

test('keepOwners with snapshot layers: each layer named in order down to the base image, none relabelled', async (t) => {
  const chain = [
    { path: '/home/u/.local/share/rum/vm/layers/b.qcow2', format: 'qcow2' as const },
    { path: '/home/u/.local/share/rum/vm/layers/a.qcow2', format: 'qcow2' as const },
    { path: '/home/u/.cache/rum/images/sha512-x.img', format: 'raw' as const },
  ];
  const q = await validated(t, domainXml(spec({ keepOwners: { chain } })));
  const disk = "/domain/devices/disk[@device='disk']";
  assert.equal(await q.xpath(`string(${disk}/backingStore/source/@file)`), chain[0]!.path);
  assert.equal(await q.xpath(`string(${disk}/backingStore/backingStore/source/@file)`), chain[1]!.path);
  assert.equal(await q.xpath(`string(${disk}/backingStore/backingStore/backingStore/source/@file)`), chain[2]!.path);
  assert.equal(await q.xpath(`string(${disk}/backingStore/backingStore/backingStore/format/@type)`), 'raw');
  assert.equal(await q.count(`${disk}//backingStore/source/seclabel[@relabel='no']`), 3);
  assert.equal(await q.count(`${disk}/backingStore/backingStore/backingStore/backingStore/*`), 0, 'the chain ends at the base image');
});

test('user: SLIRP through qemu:commandline, SSH on 127.0.0.1 and every forward', async (t) => {
  const xml = domainXml(
    spec({
      network: {
        mode: 'user',
        sshPort: 2222,
        forwards: [
          { proto: 'tcp', bind: '127.0.0.1', host: 8080, guest: 80 },
          { proto: 'udp', bind: '0.0.0.0', host: 5353, guest: 53 },
        ],
      },
    }),
  );
  const q = await validated(t, xml);
  assert.equal(await q.count('/domain/devices/interface'), 0);
  const ns = 'http://libvirt.org/schemas/domain/qemu/1.0';
  const args: string[] = [];
  const n = await q.count(`/domain/*[local-name()='commandline' and namespace-uri()='${ns}']/*[local-name()='arg']`);
  for (let i = 1; i <= n; i++) args.push(await q.xpath(`string((/domain/*[local-name()='commandline']/*[local-name()='arg'])[${i}]/@value)`));
  assert.deepEqual(args, [
    '-netdev',
    'user,id=rumnet0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53',
    '-device',
    'virtio-net-pci,netdev=rumnet0,bus=pcie.0,addr=0x10',
  ]);
});

test('virtiofs mounts: shared memfd memory, passthrough, readonly when asked', async (t) => {
  const q = await validated(
    t,
    domainXml(
      spec({
        mounts: [
          { type: 'virtiofs', source: '/home/me/proj', tag: 'rum0', readonly: false },
          { type: 'virtiofs', source: '/home/me/data', tag: 'rum1', readonly: true },
        ],
      }),
    ),
  );
  assert.equal(await q.xpath('string(/domain/memoryBacking/source/@type)'), 'memfd');
  assert.equal(await q.xpath('string(/domain/memoryBacking/access/@mode)'), 'shared');
  assert.equal(await q.count('/domain/devices/filesystem'), 2);
  assert.equal(await q.count('/domain/devices/filesystem[@accessmode="passthrough"]/driver[@type="virtiofs"]'), 2);
  assert.equal(await q.xpath('string(/domain/devices/filesystem[target/@dir="rum0"]/source/@dir)'), '/home/me/proj');
  assert.equal(await q.count('/domain/devices/filesystem[target/@dir="rum0"]/readonly'), 0);
  assert.equal(await q.count('/domain/devices/filesystem[target/@dir="rum1"]/readonly'), 1);
});

test('9p mounts: accessmode as given, path driver, readonly, no shared memory', async (t) => {
  const q = await validated(
    t,
    domainXml(
      spec({
        network: { mode: 'user', sshPort: 2200, forwards: [] },
        mounts: [
          { type: '9p', source: '/src', tag: 'src', readonly: true, accessmode: 'mapped' },
          { type: '9p', source: '/out', tag: 'out', readonly: false, accessmode: 'squash' },
          { type: '9p', source: '/plain', tag: 'plain', readonly: false },
        ],
      }),
    ),
  );
  assert.equal(await q.count('/domain/memoryBacking'), 0);
  assert.equal(await q.count('/domain/devices/filesystem/driver[@type="path"]'), 3);
  assert.equal(await q.xpath('string(/domain/devices/filesystem[target/@dir="src"]/@accessmode)'), 'mapped');
  assert.equal(await q.count('/domain/devices/filesystem[target/@dir="src"]/readonly'), 1);
  assert.equal(await q.xpath('string(/domain/devices/filesystem[target/@dir="out"]/@accessmode)'), 'squash');
  assert.equal(await q.count('/domain/devices/filesystem[target/@dir="out"]/readonly'), 0);
  assert.equal(await q.xpath('string(/domain/devices/filesystem[target/@dir="plain"]/@accessmode)'), 'passthrough');
});

const HOSTILE = `/tmp/a <b> & 'c' "d" é 日本 🚀 ]]> &amp;`;

test('hostile strings reach the parser unchanged, in attributes and in text', async (t) => {
  const s = spec({
    title: `title ${HOSTILE}`,
    overlayPath: `${HOSTILE}/disk.qcow2`,
    seedIsoPath: `${HOSTILE}/seed.iso`,
    consoleLogPath: `${HOSTILE}/console.log`,
    network: { mode: 'nat', network: `net <&'"> é`, mac: '52:54:00:AB:CD:EF' },
    mounts: [{ type: '9p', source: `${HOSTILE}/share`, tag: 'share', readonly: false, accessmode: 'mapped' }],
    owner: { configFile: `${HOSTILE}/rum.yaml`, vmDir: `${HOSTILE}/vm` },
  });
  const xml = domainXml(s);
  const q = await validated(t, xml);
  assert.equal(await q.xpath('string(/domain/title)'), s.title);
  assert.equal(await q.xpath('string(/domain/devices/disk[@device="disk"]/source/@file)'), s.overlayPath);
  assert.equal(await q.xpath('string(/domain/devices/disk[@device="cdrom"]/source/@file)'), s.seedIsoPath);
  assert.equal(await q.xpath('string(/domain/devices/serial/log/@file)'), s.consoleLogPath);
  assert.equal(await q.xpath('string(/domain/devices/interface/source/@network)'), `net <&'"> é`);
  assert.equal(await q.xpath('string(/domain/devices/interface/mac/@address)'), '52:54:00:ab:cd:ef');
  assert.equal(await q.xpath('string(/domain/devices/filesystem/source/@dir)'), s.mounts[0]!.source);
  const mark = `/domain/metadata/*[namespace-uri()='${RUM_XMLNS}']`;
  assert.equal(await q.xpath(`string(${mark}/*[local-name()='config'])`), s.owner.configFile);
  assert.equal(await q.xpath(`string(${mark}/*[local-name()='dir'])`), s.owner.vmDir);
  assert.deepEqual(readOwnerMark(xml), s.owner);
  tally('input', 'hostile strings carried exactly into the domain XML (parsed)', 9, 9);
});

test('control characters are refused, naming the field', () => {
  const bad = ['\n', '\r', '\t', '\u0000', '\u001b', '\u007f', '\u0085', '\ufffe', '\ud800'];
  let refused = 0;
  for (const c of bad) {
    const cases: [string, Partial<DomainSpec>][] = [
      ['overlayPath', { overlayPath: `/x${c}y` }],
      ['title', { title: `t${c}` }],
      ['owner.vmDir', { owner: { configFile: '/p/rum.yaml', vmDir: `/v${c}` } }],
      ['mounts[0].source', { mounts: [{ type: '9p', source: `/s${c}`, tag: 't', readonly: false }] }],
      ['network name', { network: { mode: 'nat', network: `n${c}`, mac: '52:54:00:00:00:01' } }],
    ];
    for (const [field, over] of cases) {
      assert.throws(
        () => domainXml(spec(over)),
        (err: unknown) => err instanceof RumError && err.code === 'CONFIG_INVALID' && err.message.includes(`${field} contains a control character`),
        `${field} with U+${c.charCodeAt(0).toString(16)}`,
      );
      refused++;
    }
  }
  tally('input', 'control characters in domain XML fields, refused', bad.length * 5, refused);
  // The builder refuses them too, whoever calls it.
  assert.throws(() => escapeAttr('a\nb'), RumError);
  assert.throws(() => escapeText('a\u0001b'), RumError);
  // A proper surrogate pair is not a control character.
  assert.equal(escapeText('🚀'), '🚀');
});

test('impossible specs are refused with every problem at once', () => {
  const problems = domainSpecProblems(
    spec({
      name: '42',
      overlayPath: 'relative/disk.qcow2',
      memoryBytes: 1000,
      machine: 'q35; rm -rf',
      network: {
        mode: 'user',
        sshPort: 2222,
        forwards: [
          { proto: 'tcp', bind: '127.0.0.1,hostfwd=tcp::1-:1', host: 80, guest: 80 },
          { proto: 'tcp', bind: '0.0.0.0', host: 2222, guest: 22 },
          { proto: 'tcp', bind: '127.0.0.1', host: 70000, guest: 1 },
        ],
      },
      mounts: [
        { type: 'virtiofs', source: '/a', tag: 'same', readonly: false, accessmode: 'mapped' },
        { type: '9p', source: '/b', tag: 'same', readonly: false },
        { type: '9p', source: '/c', tag: 'has space', readonly: false },
      ],
    }),
  );
  const expect = [
    /domain name may not look like an id/,
    /overlayPath must be an absolute path/,
    /memoryBytes must be an integer/,
    /machine is not a QEMU machine type/,
    /forwards\[0\]\.bind must be an IPv4 address/,
    /forwards\[1\] listens on tcp 0\.0\.0\.0:2222, already used by the SSH port/,
    /forwards\[2\]\.host must be an integer from 1 to 65535/,
    /virtiofs supports only accessmode passthrough/,
    /mounts\[1\]\.tag same is used twice/,
    /mounts\[2\]\.tag must be/,
  ];
  for (const re of expect) assert.ok(problems.some((p) => re.test(p)), `expected a problem matching ${re}; got:\n${problems.join('\n')}`);
  assert.equal(problems.length, expect.length, problems.join('\n'));
  assert.throws(() => domainXml(spec({ name: '42' })), /cannot write the domain XML/);
});

test('domainUuid: the same UUID as every earlier rum for the same project and name (libvirt refuses a redefinition with another)', () => {
  assert.equal(domainUuid('/home/u/proj/rum.yaml', 'web'), '8a6fdd62-9ac4-8d49-9025-63556659f9b8');
  assert.notEqual(domainUuid('/home/u/other/rum.yaml', 'web'), domainUuid('/home/u/proj/rum.yaml', 'web'));
});

test('readOwnerMark: our own output, a re-serialised variant, and no mark', () => {
  const owner = { configFile: `/p/it's "quoted" & <odd>/rum.yaml`, vmDir: '/v/é' };
  assert.deepEqual(readOwnerMark(domainXml(spec({ owner }))), owner);

  const variant = `<domain type="qemu">
  <name>x</name>
  <metadata>
    <other:thing xmlns:other="https://example.org/x"><other:config>/nope</other:config></other:thing>
    <r:vm xmlns:r="${RUM_XMLNS}">
      <r:config>/p/it&apos;s &quot;quoted&quot; &amp; &lt;odd&gt;/rum.yaml</r:config>
      <r:dir><![CDATA[/v/]]>&#xE9;</r:dir>
    </r:vm>
  </metadata>
</domain>`;
  assert.deepEqual(readOwnerMark(variant), owner);

  const defaultNs = `<domain><metadata><vm xmlns='${RUM_XMLNS}'><config>/c</config><dir>/d</dir></vm></metadata></domain>`;
  assert.deepEqual(readOwnerMark(defaultNs), { configFile: '/c', vmDir: '/d' });

  const otherNs = `<domain><metadata><rum:vm xmlns:rum="https://rum.dev/xmlns/vm/2"><rum:config>/c</rum:config><rum:dir>/d</rum:dir></rum:vm></metadata></domain>`;
  assert.equal(readOwnerMark(otherNs), undefined);
  assert.equal(readOwnerMark('<domain><name>x</name></domain>'), undefined);
  assert.equal(readOwnerMark(`<domain><metadata><rum:vm xmlns:rum="${RUM_XMLNS}"><rum:config>/c</rum:config></rum:vm></metadata></domain>`), undefined);
});

test('libvirt keeps the mark and adds no display: define + dumpxml on the in-process test driver', async (t) => {
  const owner = { configFile: `/p/a <b> & 'c' "d" 日本/rum.yaml`, vmDir: '/v/🚀 x' };
  const dir = await scratch(t);
  const file = join(dir, 'domain.xml');
  await writeFile(
    file,
    domainXml(
      spec({
        name: 'rum-mark',
        owner,
        network: { mode: 'user', sshPort: 2222, forwards: [] },
        mounts: [{ type: '9p', source: '/src', tag: 'src', readonly: true, accessmode: 'mapped' }],
      }),
    ),
  );
  // test:///default is libvirt's mock driver, run inside virsh itself: no daemon, no QEMU.
  const r = await execa('virsh', ['--connect', 'test:///default', `define --file ${JSON.stringify(file)}; dumpxml --domain rum-mark`], {
    env: { LC_ALL: 'C' },
  });
  const dumped = r.stdout.slice(r.stdout.indexOf('<domain'));
  assert.match(dumped, /<metadata>/);
  assert.deepEqual(readOwnerMark(dumped), owner);
  const q = await validated(t, dumped, 'dumped.xml');
  assert.equal(await q.count('/domain/devices/graphics'), 0);
  assert.equal(await q.count('/domain/devices/video'), 1);
  assert.equal(await q.xpath('string(/domain/devices/video/model/@type)'), 'none');
});
