// A project's libvirt network: its XML valid against libvirt's own schema (virt-xml-validate),
// every value read back intact by a real XML parser (xmllint), rum's mark found again after libvirt
// re-serialises it (virsh's in-process test driver), control characters refused; and the address
// choices: a free /24 that overlaps nothing taken, a fixed address per machine that stays put.
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { RumError } from '../../src/errors.js';
import {
  assignHostIps,
  dhcpRangeFor,
  inSubnet,
  ipToInt,
  overlaps,
  parseProcNetRoute,
  pickSubnet,
  type Ipv4Subnet,
} from '../../src/libvirt/network-addr.js';
import {
  bridgeNameFor,
  dhcpHostXml,
  dnsHostXml,
  networkDomainFor,
  networkSpecProblems,
  parseNetworkXml,
  projectNetworkXml,
  readNetworkOwner,
  RUM_NETWORK_XMLNS,
  type NetworkSpec,
} from '../../src/libvirt/network-xml.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { tally } from '../helpers/tally.js';

function spec(over: Partial<NetworkSpec> = {}): NetworkSpec {
  return {
    name: 'rum-shop',
    uuid: '3e3fce45-4f53-4fa7-bb32-11f34168b82b',
    bridge: bridgeNameFor('rum-shop'),
    domain: networkDomainFor('shop'),
    subnet: { address: '192.168.101.1', prefix: 24 },
    dhcpRange: dhcpRangeFor({ address: '192.168.101.1', prefix: 24 }),
    hosts: [
      { mac: '52:54:00:00:00:01', name: 'web', ip: '192.168.101.10' },
      { mac: '52:54:00:00:00:02', name: 'db', ip: '192.168.101.11' },
    ],
    owner: { configFile: '/home/me/shop/rum.yaml' },
    ...over,
  };
}

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rum-network-xml-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes the XML, checks it against libvirt's schema, returns a query function over it. */
async function validated(t: TestContext, xml: string, file = 'network.xml') {
  const path = join(await scratch(t), file);
  await writeFile(path, xml);
  const v = await execa('virt-xml-validate', [path, 'network'], { reject: false, all: true });
  assert.equal(v.exitCode, 0, `virt-xml-validate failed:\n${v.all}\n${xml}`);
  const xpath = async (expr: string): Promise<string> => {
    const r = await execa('xmllint', ['--xpath', expr, path], { stripFinalNewline: false });
    return r.stdout.replace(/\n$/, ''); // xmllint ends a string() result with one newline
  };
  return { path, xpath, count: async (expr: string) => Number(await xpath(`count(${expr})`)) };
}

const MARK = `/network/metadata/*[namespace-uri()='${RUM_NETWORK_XMLNS}']`;

test('valid network XML: NAT, local-only domain, a DHCP reservation and a DNS record per machine', async (t) => {
  const s = spec();
  const q = await validated(t, projectNetworkXml(s));
  assert.equal(await q.xpath('string(/network/name)'), 'rum-shop');
  assert.equal(await q.xpath('string(/network/uuid)'), s.uuid);
  assert.equal(await q.xpath('string(/network/forward/@mode)'), 'nat');
  assert.equal(await q.xpath('string(/network/bridge/@name)'), s.bridge);
  assert.equal(await q.xpath('string(/network/domain/@name)'), 'shop.rum.internal');
  assert.equal(await q.xpath('string(/network/domain/@localOnly)'), 'yes');
  assert.equal(await q.xpath('string(/network/ip/@address)'), '192.168.101.1');
  assert.equal(await q.xpath('string(/network/ip/@prefix)'), '24');
  assert.equal(await q.xpath('string(/network/ip/dhcp/range/@start)'), '192.168.101.128');
  assert.equal(await q.xpath('string(/network/ip/dhcp/range/@end)'), '192.168.101.254');
  assert.equal(await q.xpath("string(/network/ip/dhcp/host[@name='db']/@mac)"), '52:54:00:00:00:02');
  assert.equal(await q.xpath("string(/network/ip/dhcp/host[@name='db']/@ip)"), '192.168.101.11');
  assert.equal(await q.xpath("string(/network/dns/host[hostname='web']/@ip)"), '192.168.101.10');
  assert.equal(await q.xpath(`string(${MARK}/*[local-name()='config'])`), s.owner.configFile);
  assert.equal(readNetworkOwner(projectNetworkXml(s)), s.owner.configFile);
});

test('no machines yet: no <dns> section, still valid', async (t) => {
  const q = await validated(t, projectNetworkXml(spec({ hosts: [], uuid: undefined })));
  assert.equal(await q.count('/network/dns'), 0);
  assert.equal(await q.count('/network/uuid'), 0);
  assert.equal(await q.count('/network/ip/dhcp/host'), 0);
});

const HOSTILE = `/tmp/a <b> & 'c' "d" é 日本 🚀 ]]> &amp; <!-- x -->`;

test('a hostile config path is carried exactly, in the file and after parsing', async (t) => {
  const s = spec({ owner: { configFile: `${HOSTILE}/rum.yaml` }, name: `rum-<&'">` });
  const xml = projectNetworkXml(s);
  const q = await validated(t, xml);
  assert.equal(await q.xpath(`string(${MARK}/*[local-name()='config'])`), s.owner.configFile);
  assert.equal(await q.xpath('string(/network/name)'), s.name);
  assert.equal(readNetworkOwner(xml), s.owner.configFile);
  assert.equal(parseNetworkXml(xml)?.name, s.name);
  tally('input', 'hostile strings carried exactly into the network XML (parsed)', 2, 2);
});

test('control characters are refused, naming the field', () => {
  const bad = ['\n', '\r', '\t', '\u0000', '\u001b', '\u007f', '\u0085', '\ufffe', '\ud800'];
  let refused = 0;
  for (const c of bad) {
    for (const [field, over] of [
      ['owner.configFile', { owner: { configFile: `/p/rum${c}.yaml` } }],
      ['network name', { name: `rum${c}shop` }],
    ] as const) {
      assert.throws(
        () => projectNetworkXml(spec(over)),
        (err: unknown) => err instanceof RumError && err.code === 'CONFIG_INVALID' && err.message.includes(`${field} contains a control character`),
        `${field} with U+${c.charCodeAt(0).toString(16)}`,
      );
      refused++;
    }
  }
  tally('input', 'control characters in network XML fields, refused', bad.length * 2, refused);
});

test('impossible specs are refused with every problem at once', () => {
  const problems = networkSpecProblems(
    spec({
      name: '-x',
      uuid: 'nope',
      bridge: 'a-bridge-name-too-long',
      domain: 'shop..internal',
      owner: { configFile: 'relative/rum.yaml' },
      dhcpRange: { start: '192.168.101.200', end: '192.168.101.100' },
      hosts: [
        { mac: '52:54:00:00:00:01', name: 'web', ip: '192.168.101.10' },
        { mac: '52:54:00:00:00:01', name: 'WEB', ip: '192.168.101.10' },
        { mac: '01:00:5e:00:00:01', name: 'db_1', ip: '192.168.102.3' },
        { mac: 'nope', name: '-x', ip: '192.168.101.1' },
        { mac: '52:54:00:00:00:09', name: 'ok', ip: '192.168.101.255' },
      ],
    }),
  );
  const expect = [
    /network name may not start with '-'/,
    /uuid is not a UUID/,
    /bridge must be 1-15/,
    /domain is not a DNS name/,
    /owner.configFile must be an absolute path/,
    /dhcpRange starts after it ends/,
    /hosts\[1\].mac 52:54:00:00:00:01 is also hosts\[0\].mac/,
    /hosts\[1\].name web is also hosts\[0\].name/,
    /hosts\[1\].ip 192.168.101.10 is also hosts\[0\].ip/,
    /hosts\[2\].mac 01:00:5e:00:00:01 is a multicast address/,
    /hosts\[2\].name must be a DNS label/,
    /hosts\[2\].ip 192.168.102.3 is not a host address of 192.168.101.1\/24/,
    /hosts\[3\].mac is not a MAC address/,
    /hosts\[3\].name must be a DNS label/,
    /hosts\[3\].ip 192.168.101.1 is the network's own address/,
    /hosts\[4\].ip 192.168.101.255 is not a host address/,
  ];
  for (const re of expect) assert.ok(problems.some((p) => re.test(p)), `${re} in:\n${problems.join('\n')}`);
  assert.equal(problems.length, expect.length, problems.join('\n'));
  assert.deepEqual(networkSpecProblems(spec()), []);
  assert.match(networkSpecProblems(spec({ subnet: { address: '192.168.1.1', prefix: 30 } }))[0]!, /prefix of 8 to 28/);
  assert.match(networkSpecProblems(spec({ dhcpRange: { start: '192.168.101.1', end: '192.168.101.9' } })).join(), /dhcpRange.start 192.168.101.1 is the network's own address/);
});

test('bridge and domain names: deterministic, short enough, DNS-safe', () => {
  const b = bridgeNameFor('rum-shop');
  assert.match(b, /^rum-[0-9a-f]{11}$/);
  assert.equal(b.length, 15);
  assert.equal(bridgeNameFor('rum-shop'), b);
  assert.notEqual(bridgeNameFor('rum-shop2'), b);
  assert.equal(networkDomainFor('My Shop_2'), 'my-shop-2.rum.internal');
  assert.equal(networkDomainFor('日本'), 'project.rum.internal');
  assert.equal(networkDomainFor('x'.repeat(100)), `${'x'.repeat(63)}.rum.internal`);
});

test('net-update fragments: one line, escaped, only the key when deleting', () => {
  assert.equal(dhcpHostXml({ mac: '52:54:00:AA:00:01', name: 'web', ip: '192.168.101.10' }), "<host mac='52:54:00:aa:00:01' name='web' ip='192.168.101.10'/>");
  assert.equal(dhcpHostXml({ mac: '52:54:00:aa:00:01' }), "<host mac='52:54:00:aa:00:01'/>");
  assert.equal(dnsHostXml({ ip: '192.168.101.10', name: 'web' }), "<host ip='192.168.101.10'><hostname>web</hostname></host>");
  assert.equal(dnsHostXml({ ip: '192.168.101.10' }), "<host ip='192.168.101.10'/>");
  assert.throws(() => dnsHostXml({ ip: '192.168.101.10', name: "x'/><y" }), RumError);
  assert.throws(() => dhcpHostXml({ mac: "x' name='y" }), RumError);
  assert.throws(() => dnsHostXml({ ip: '1.2.3' }), RumError);
});

// ---- reading back -----------------------------------------------------------------------------

test('the mark survives libvirt re-serialising the network (define + net-dumpxml)', async (t) => {
  const owner = { configFile: `${HOSTILE}/rum.yaml` };
  const file = join(await scratch(t), 'net.xml');
  await writeFile(file, projectNetworkXml(spec({ owner })));
  // test:///default is libvirt's mock driver, run inside virsh itself: no daemon, no bridge.
  const r = await execa('virsh', ['--connect', 'test:///default', `net-define --file ${JSON.stringify(file)} --validate; net-dumpxml --network rum-shop`], {
    env: { LC_ALL: 'C' },
  });
  const dumped = r.stdout.slice(r.stdout.indexOf('<network'));
  assert.match(dumped, /<metadata>/);
  assert.equal(readNetworkOwner(dumped), owner.configFile);
  await validated(t, dumped, 'dumped.xml');
  const facts = parseNetworkXml(dumped);
  assert.deepEqual(facts, {
    name: 'rum-shop',
    uuid: '3e3fce45-4f53-4fa7-bb32-11f34168b82b',
    bridge: bridgeNameFor('rum-shop'),
    forwardMode: 'nat',
    domain: 'shop.rum.internal',
    subnets: [{ address: '192.168.101.1', prefix: 24 }],
    routes: [],
    dhcpRange: { start: '192.168.101.128', end: '192.168.101.254' },
    dhcpHosts: spec().hosts,
    dnsHosts: [
      { ip: '192.168.101.10', hostnames: ['web'] },
      { ip: '192.168.101.11', hostnames: ['db'] },
    ],
    owner: owner.configFile,
  });
});

test('the mark is found by its namespace, whatever the prefix; foreign or absent marks are not rum', () => {
  const net = (metadata: string) => `<network><name>n</name><metadata>${metadata}</metadata><bridge name="virbr9"/></network>`;
  assert.equal(readNetworkOwner(net(`<x:network xmlns:x="${RUM_NETWORK_XMLNS}"><x:config>/a&amp;b</x:config></x:network>`)), '/a&b');
  assert.equal(readNetworkOwner(net(`<network xmlns="${RUM_NETWORK_XMLNS}"><config><![CDATA[/c<d]]></config></network>`)), '/c<d');
  assert.equal(readNetworkOwner(net(`<rum:network xmlns:rum="https://example.com/other"><rum:config>/x</rum:config></rum:network>`)), undefined);
  assert.equal(readNetworkOwner(net(`<rum:network xmlns:rum="${RUM_NETWORK_XMLNS}"><rum:config></rum:config></rum:network>`)), undefined);
  assert.equal(readNetworkOwner('<network><name>default</name></network>'), undefined);
  assert.equal(readNetworkOwner(`<domain><metadata><rum:network xmlns:rum="${RUM_NETWORK_XMLNS}"><rum:config>/x</rum:config></rum:network></metadata></domain>`), undefined);
  assert.equal(readNetworkOwner('<network><name>broken</name>'), undefined);
  assert.equal(readNetworkOwner('not xml'), undefined);
});

test("a foreign network's subnets: netmask or prefix, IPv6 and routes", () => {
  const facts = parseNetworkXml(`<?xml version="1.0"?>
<!-- a comment -->
<network>
  <name>lab</name>
  <bridge name='virbr7'/>
  <ip address='10.20.0.1' netmask='255.255.0.0'/>
  <ip family='ipv6' address='fd00::1' prefix='64'/>
  <route address='172.30.0.0' prefix='16' gateway='10.20.0.5'/>
</network>`);
  assert.deepEqual(facts?.subnets, [{ address: '10.20.0.1', prefix: 16 }]);
  assert.deepEqual(facts?.routes, [{ address: '172.30.0.0', prefix: 16 }]);
  assert.equal(facts?.forwardMode, undefined);
  assert.equal(parseNetworkXml('<domain><name>x</name></domain>'), undefined);
});

// ---- choosing addresses -----------------------------------------------------------------------

const net = (cidr: string): Ipv4Subnet => {
  const [address, prefix] = cidr.split('/');
  return { address: address!, prefix: Number(prefix) };
};

test('pickSubnet: the first free /24 from 192.168.101, past reserved and taken ranges', () => {
  assert.deepEqual(pickSubnet([]), net('192.168.101.1/24'));
  // libvirt's default network and a host address inside 192.168.101.0/24 and a route to .102-.103
  assert.deepEqual(pickSubnet([net('192.168.122.1/24'), net('192.168.101.77/24'), net('192.168.102.0/23')]), net('192.168.104.1/24'));
  // a default route takes nothing; a /32 host route takes its /24
  assert.deepEqual(pickSubnet([net('0.0.0.0/0'), net('192.168.101.9/32')]), net('192.168.102.1/24'));
  // all of 192.168/16 taken (a VPN): 10.100.0.0/24 on
  assert.deepEqual(pickSubnet([net('192.168.0.0/16')]), net('10.100.0.1/24'));
  assert.deepEqual(pickSubnet([net('192.168.0.0/16'), net('10.100.0.0/20')]), net('10.100.16.1/24'));
  assert.equal(pickSubnet([net('192.168.0.0/16'), net('10.0.0.0/8')]), undefined);
  // 192.168.122 and 192.168.100 are never chosen, even when free or preferred
  assert.deepEqual(pickSubnet(Array.from({ length: 21 }, (_, i) => net(`192.168.${101 + i}.0/24`))), net('192.168.123.1/24'));
  assert.deepEqual(pickSubnet([], { prefer: net('192.168.122.1/24') }), net('192.168.101.1/24'));
  // a preferred subnet is kept when free, dropped when taken
  assert.deepEqual(pickSubnet([net('192.168.101.0/24')], { prefer: net('192.168.200.1/24') }), net('192.168.200.1/24'));
  assert.deepEqual(pickSubnet([net('192.168.200.0/22')], { prefer: net('192.168.201.1/24') }), net('192.168.101.1/24'));
  // whatever it picks overlaps nothing it was given
  const taken = [net('192.168.96.0/19'), net('192.168.128.0/17'), net('10.96.0.0/11')];
  const picked = pickSubnet(taken)!;
  assert.ok(!taken.some((x) => overlaps(x, picked)), JSON.stringify(picked));
  assert.deepEqual(picked, net('10.128.0.1/24'));
});

test('assignHostIps: fixed addresses in the lower half, stable as machines come and go', () => {
  const subnet = net('192.168.101.1/24');
  const first = assignHostIps(['web', 'db', 'cache'], subnet);
  assert.deepEqual([...first.keys()], ['cache', 'db', 'web']);
  for (const ip of first.values()) {
    assert.ok(inSubnet(ip, subnet));
    const last = ipToInt(ip) & 255;
    assert.ok(last >= 2 && last <= 127, ip); // not .0/.1, not the DHCP range .128-.254
  }
  assert.equal(new Set(first.values()).size, 3);
  // deterministic, whatever the order names come in
  assert.deepEqual(assignHostIps(['cache', 'web', 'db'], subnet), first);
  // given the previous assignment, a new machine moves nobody
  const more = assignHostIps(['web', 'db', 'cache', 'queue'], subnet, first);
  for (const [n, ip] of first) assert.equal(more.get(n), ip);
  // a machine removed frees its address; the others stay
  const fewer = assignHostIps(['web', 'queue'], subnet, more);
  assert.deepEqual(fewer, new Map([['queue', more.get('queue')], ['web', more.get('web')]]));
  // a previous address anywhere in the subnet is kept (even in the DHCP range); unusable ones are not
  const prev = new Map([
    ['a', '192.168.101.200'],
    ['b', '192.168.101.1'], // the host's own
    ['c', '192.168.99.5'], // another subnet (the network moved)
    ['d', '192.168.101.200'], // already a's
    ['e', 'nonsense'],
  ]);
  const kept = assignHostIps(['a', 'b', 'c', 'd', 'e'], subnet, prev);
  assert.equal(kept.get('a'), '192.168.101.200');
  for (const n of ['b', 'c', 'd', 'e']) {
    const last = ipToInt(kept.get(n)!) & 255;
    assert.ok(inSubnet(kept.get(n)!, subnet) && last >= 2 && last <= 127, `${n}: ${kept.get(n)}`);
  }
  assert.equal(new Set(kept.values()).size, 5);
});

test('assignHostIps: hash collisions probe onwards; a full pool is an error', () => {
  const subnet = net('192.168.101.1/24');
  const names = Array.from({ length: 126 }, (_, i) => `m${i}`);
  const all = assignHostIps(names, subnet);
  assert.equal(new Set(all.values()).size, 126); // .2-.127, every one
  assert.throws(
    () => assignHostIps([...names, 'one-more'], subnet),
    (err: unknown) => err instanceof RumError && err.code === 'CONFIG_INVALID' && /127 machines do not fit/.test(err.message),
  );
  assert.throws(() => assignHostIps(['a', 'a'], subnet), /given twice/);
  // a smaller network splits the same way: a /26 with the host at .65 has .66-.95 fixed
  const small = assignHostIps(['x', 'y'], net('10.1.2.65/26'));
  for (const ip of small.values()) assert.ok(ipToInt(ip) >= ipToInt('10.1.2.66') && ipToInt(ip) <= ipToInt('10.1.2.95'), ip);
  assert.deepEqual(dhcpRangeFor(net('10.1.2.65/26')), { start: '10.1.2.96', end: '10.1.2.126' });
});

test('host routes from /proc/net/route: little-endian hex, default route left out', () => {
  const text = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
    'eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0',
    'tun0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0',
    'bogus line',
  ].join('\n');
  assert.deepEqual(parseProcNetRoute(text), [net('192.168.0.0/24'), net('10.0.0.0/8')]);
});

// ---- virsh's network commands, against the mock driver -----------------------------------------

test('virsh: network list, and absence as a value', async () => {
  const v = new Virsh('test:///default');
  assert.deepEqual(await v.netList(), ['default']);
  const xml = await v.netDumpXml('default');
  assert.ok(xml !== undefined && parseNetworkXml(xml)?.name === 'default');
  assert.equal(readNetworkOwner(xml), undefined);
  assert.equal(await v.netDumpXml('no-such-net'), undefined);
  assert.equal(await v.netUndefine('no-such-net'), 'absent');
  assert.equal(await v.netDestroy('no-such-net'), 'absent');
});
