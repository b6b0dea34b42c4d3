// Owns: what a valid rum.yaml is. The one source of truth: types, defaults, validation and the
// JSON Schema (`rum schema`) all come from here. Cross-field and filesystem checks: rules.ts.
// Every string but the scripts and ignore patterns is one line (one-line.ts): they all end up as
// a line of user-data, fstab, sources.list, authorized_keys or libvirt XML.
import { z } from 'zod';
import { ignorePatternProblem } from '../mounts/ignore.js';
import { baseProblem, mirrorProblem } from './image-source.js';
import { notOnOneLine, oneLine } from './one-line.js';

// DNS label: it becomes a directory name, a libvirt domain name and the guest's hostname.
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// POSIX portable user name, as useradd accepts by default.
const POSIX_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
// Debian/Ubuntu package name, optionally pinned (`name=version`).
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/;
// A guest path that can go into fstab and a shell word without escaping surprises.
const GUEST_PATH = /^\/([A-Za-z0-9._@+-]+\/?)*$/;
const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT])(?:i?B)?$/i;
const OPENSSH_KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);
// Far below the kernel's ephemeral port range (28,232 ports by default), from which user
// networking's SSH port is picked around the forwarded ones: rum.yaml alone never leaves it none.
export const MAX_PORTS = 1024;
const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** `2G` -> bytes (binary units, as libvirt and qemu-img use them). */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  if (!m) return undefined;
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** Bytes -> `1G`, `128M`: the largest unit that divides evenly. */
const sizeText = (bytes: number) => {
  const unit = ['T', 'G', 'M', 'K'].find((u) => bytes % UNITS[u]! === 0);
  return unit ? `${bytes / UNITS[unit]!}${unit}` : `${bytes} bytes`;
};

const size = (what: string, min: number) =>
  oneLine(z.string({ error: `${what} must be a size such as 2G or 512M` }), what)
    .transform((text, ctx) => {
      const bytes = parseSize(text);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a size: use a number and K, M, G or T, e.g. 2G` });
        return z.NEVER;
      }
      if (bytes < min) {
        ctx.addIssue({ code: 'custom', message: `${what} ${text} is too small: it must be at least ${sizeText(min)}` });
        return z.NEVER;
      }
      return bytes;
    });

/** An OpenSSH public key line: `type base64 [comment]`, the blob naming the same type. */
export function isOpenSshPublicKey(line: string): boolean {
  if (notOnOneLine(line) !== undefined) return false;
  const [type, b64] = line.trim().split(/\s+/);
  if (!type || !b64 || !OPENSSH_KEY_TYPES.has(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  const blob = Buffer.from(b64, 'base64');
  if (blob.length < 4) return false;
  const len = blob.readUInt32BE(0);
  return len === type.length && blob.subarray(4, 4 + len).toString('latin1') === type;
}

/** A refinement for a check that words its own problem, hint included (issues.ts shows params.hint). */
const refuse = (problemOf: (text: string) => { message: string; hint: string } | undefined) => (text: string, ctx: z.RefinementCtx<string>) => {
  const problem = problemOf(text);
  if (problem) ctx.addIssue({ code: 'custom', message: problem.message, params: { hint: problem.hint } });
};

const dnsLabel = (what: string) =>
  oneLine(z.string(), what).regex(DNS_LABEL, {
    message: `${what} must be a DNS label: lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'`,
  });

export const ImageSchema = z.strictObject({
  base: oneLine(z.string(), 'image.base')
    .min(1)
    .superRefine(refuse(baseProblem))
    .describe('A shorthand (debian-12, debian-13, ubuntu-22.04, ubuntu-24.04), an http(s) URL, or a path relative to rum.yaml'),
  checksum: oneLine(z.string(), 'image.checksum')
    .regex(/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/, {
      message: 'image.checksum must be sha256:<64 hex digits> or sha512:<128 hex digits>',
    })
    .optional()
    .describe('Verified before the image is trusted; without it, shorthands use the distribution SUMS file'),
  mirror: oneLine(z.string(), 'image.mirror')
    .superRefine(refuse(mirrorProblem))
    .optional()
    .describe('Base URL that replaces the distribution host for shorthands (also: RUM_IMAGE_MIRROR)'),
});

export const ResourcesSchema = z.strictObject({
  cpus: z.number().int().min(1).max(512).default(2),
  memory: size('resources.memory', 128 * 2 ** 20).prefault('2G').describe('Guest RAM, e.g. 2G'),
  disk: size('resources.disk', 1 * 2 ** 30).prefault('20G').describe('Overlay virtual size; never below the base image'),
});

export const NetworkSchema = z.strictObject({
  mode: z
    .enum(['nat', 'user'])
    .optional()
    .describe('nat: a libvirt network (system default); user: QEMU user-mode networking (session default)'),
  name: oneLine(z.string(), 'network.name')
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'network.name must be a libvirt network name (letters, digits, _ . -)' })
    .default('default'),
  hostname: dnsLabel('network.hostname').optional().describe('Default: the VM name'),
});

export const SshSchema = z.strictObject({
  user: oneLine(z.string(), 'ssh.user')
    .regex(POSIX_USER, { message: 'ssh.user must be a POSIX user name: lowercase letter or _, then [a-z0-9_-], at most 32' })
    .refine((u) => u !== 'root', 'ssh.user may not be root: rum creates the user with passwordless sudo')
    .default('rum'),
  authorized_keys: z
    .array(
      oneLine(z.string(), 'an authorized key').refine(isOpenSshPublicKey, 'not an OpenSSH public key (expected "ssh-ed25519 AAAA... comment")'),
    )
    .default([]),
});

export const MountSchema = z.strictObject({
  source: oneLine(z.string(), 'mount source')
    .min(1)
    .describe('Host directory, relative to rum.yaml allowed'),
  target: oneLine(z.string(), 'mount target')
    .regex(GUEST_PATH, { message: 'mount target must be an absolute guest path of letters, digits and . _ @ + -' })
    .refine((t) => !t.split('/').some((p) => p === '..' || p === '.'), 'mount target may not contain . or ..')
    .refine((t) => t !== '/', 'mount target may not be /'),
  readonly: z.boolean().default(false),
  type: z.enum(['auto', 'virtiofs', '9p']).default('auto'),
  inotify: z.boolean().default(false).describe('Replay host edits in the guest so watchers fire (rum watch)'),
  // Matched on the host only, against names that may hold any character but '/' and NUL: no
  // one-line rule, only the pattern's own (checked here, at its line, not when rum watch starts).
  ignore: z
    .array(z.string().superRefine(refuse(ignorePatternProblem)))
    .default([])
    .describe('.gitignore-style patterns the inotify bridge skips'),
});

export const PortSchema = z.strictObject({
  host: z.number().int().min(1).max(65535),
  guest: z.number().int().min(1).max(65535),
  bind: z.ipv4({ message: 'ports[].bind must be an IPv4 address' }).default('127.0.0.1'),
  proto: z.enum(['tcp', 'udp']).default('tcp'),
});

export const ProvisionSchema = z.strictObject({
  packages: z
    .array(oneLine(z.string(), 'a package name').regex(PACKAGE, { message: 'not a package name (lowercase letters, digits, + . -; optional =version)' }))
    .default([]),
  apt_sources: z
    .array(
      oneLine(z.string(), 'an apt source line').regex(/^deb(-src)? (\[[^\]]*\] )?[a-z]+:\S+ \S+( [A-Za-z0-9._/-]+)*$/, {
        message: 'not an apt source line (expected e.g. "deb http://host/debian bookworm main")',
      }),
    )
    .optional()
    .describe('apt source lines that replace the image\'s own (a mirror or a local repository)'),
  // Scripts are many lines by nature: user-data keeps each whole by how it is written (src/cloudinit/).
  image: z
    .string()
    .optional()
    .describe('Shell script run once when the provisioned layer is built (with packages), shared by every VM built from the same inputs; nothing per-VM'),
  system: z.string().optional().describe('Shell script run once, at first boot'),
  boot: z.string().optional().describe('Shell script run at every boot'),
});

// A cloned repository's rum.yaml is untrusted: a URI may only choose transports and parameters
// that connect, never one that runs a program (qemu+ext's command=, ssh's netcat=).
const URI_TRANSPORTS = ['unix', 'ssh', 'libssh', 'libssh2', 'tls', 'tcp'];
const URI_PARAMS = ['socket', 'mode', 'proxy', 'keyfile', 'known_hosts', 'known_hosts_verify', 'no_verify', 'no_tty', 'pkipath', 'sshauth'];

export const LibvirtSchema = z.strictObject({
  uri: oneLine(z.string(), 'libvirt.uri')
    .regex(/^qemu(\+[a-z0-9]+)?:\/\/[A-Za-z0-9.@:_-]*\/(system|session)(\?[A-Za-z0-9=&._/-]*)?$/, {
      message: 'libvirt.uri must be a QEMU URI such as qemu:///system or qemu:///session',
    })
    .superRefine((uri, ctx) => {
      const transport = /^qemu\+([a-z0-9]+):/.exec(uri)?.[1];
      if (transport !== undefined && !URI_TRANSPORTS.includes(transport))
        ctx.addIssue({ code: 'custom', message: `libvirt.uri: transport "${transport}" is not one rum uses (${URI_TRANSPORTS.join(', ')}); qemu+ext would run a program` });
      for (const param of (uri.split('?')[1] ?? '').split('&').filter(Boolean)) {
        const name = param.split('=')[0]!;
        if (!URI_PARAMS.includes(name))
          ctx.addIssue({ code: 'custom', message: `libvirt.uri: parameter "${name}" is not one rum allows (${URI_PARAMS.join(', ')}); command= and netcat= would run a program` });
      }
    })
    .default('qemu:///system'),
  domain_type: z.enum(['auto', 'kvm', 'qemu']).default('auto').describe('auto: kvm when really usable, else qemu (TCG)'),
  machine: oneLine(z.string(), 'libvirt.machine')
    .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'libvirt.machine must be a QEMU machine type such as q35' })
    .default('q35'),
});

export const RumYamlSchema = z
  .strictObject({
    name: dnsLabel('name').optional().describe("Default: rum.yaml's directory name, normalised"),
    image: ImageSchema,
    resources: ResourcesSchema.prefault({}),
    network: NetworkSchema.prefault({}),
    ssh: SshSchema.prefault({}),
    mounts: z.array(MountSchema).default([]),
    ports: z
      .array(PortSchema)
      .max(MAX_PORTS, { message: `ports may forward at most ${MAX_PORTS} ports` })
      .default([]),
    provision: ProvisionSchema.prefault({}),
    libvirt: LibvirtSchema.prefault({}),
  })
  .describe('rum.yaml: a project-local libvirt VM');
// One VM, as a file without machines: is, and as each machine is once merged with the top-level
// defaults (machines.ts): every check above applies to each machine unchanged.

/** A machine's key: with the project's name it makes the VM name, and it is the guest's hostname. */
export const MachineNameSchema = dnsLabel('a machine name');
export const AfterSchema = z
  .array(MachineNameSchema)
  .describe('Machines of this file that must be up before this one starts');

export type RumYaml = z.output<typeof RumYamlSchema>;
export type RumYamlInput = z.input<typeof RumYamlSchema>;
export type Mount = z.output<typeof MountSchema>;
export type Port = z.output<typeof PortSchema>;

/** One VM after loading: defaults applied, name and paths resolved. What rules read. */
export interface Config extends RumYaml {
  /** The VM's name (libvirt domain, VM directory): the project's, or `${project}-${machine}`. */
  name: string;
  /** The machine's key under machines:; the project's name when the file declares no machines. */
  machine: string;
  /** Machines of the same project this one starts after; empty without machines:. */
  after: string[];
  network: RumYaml['network'] & { mode: 'nat' | 'user'; hostname: string };
  mounts: (Mount & { hostPath: string })[];
  /** Absolute path of the rum.yaml this came from. */
  file: string;
  /** Its directory: relative paths in the config are relative to it. */
  dir: string;
}

/** A whole rum.yaml: one VM per machine. */
export interface Project {
  /** `name:`, or rum.yaml's directory name normalised. */
  name: string;
  file: string;
  dir: string;
  /** No machines: key: the file is one VM, named like the project, exactly as before machines. */
  single: boolean;
  /** In file order. */
  machines: Config[];
}

type Json = { [key: string]: unknown };

export function jsonSchema(): object {
  const schema = z.toJSONSchema(RumYamlSchema, { io: 'input', target: 'draft-2020-12' }) as Json;
  const { name: _name, ...fields } = schema.properties as Json;
  const { $schema: _, ...after } = z.toJSONSchema(AfterSchema, { io: 'input', target: 'draft-2020-12' }) as Json;
  const machine = {
    type: 'object',
    description: 'A VM of this project, named <project>-<machine>. Unset keys are inherited from the top level: mappings key by key, lists whole',
    properties: { ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, inheritable(v)])), after: { ...after, uniqueItems: true } },
    additionalProperties: false,
  };
  const properties = {
    ...(schema.properties as Json),
    machines: {
      type: 'object',
      description: 'Several VMs, by machine name; the top-level keys are the defaults each inherits',
      propertyNames: { pattern: DNS_LABEL.source },
      additionalProperties: { anyOf: [machine, { type: 'null' }] },
      minProperties: 1,
    },
  };
  // With machines:, image may be set per machine instead of at the top.
  const { required: _required, ...rest } = schema;
  return { ...rest, properties, anyOf: [{ required: ['image'] }, { required: ['machines'] }] };
}

/** A field's schema as a machine may write it: any key of a mapping may be left to the top level.
 * List items are whole values (a machine's list replaces the top level's), so they keep theirs. */
function inheritable(schema: unknown): unknown {
  if (typeof schema !== 'object' || schema === null) return schema;
  const { required: _, default: _default, properties, ...rest } = schema as Json;
  if (typeof properties !== 'object' || properties === null) return rest;
  return { ...rest, properties: Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, inheritable(v)])) };
}
