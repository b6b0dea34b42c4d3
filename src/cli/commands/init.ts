// `rum init [--image X]`: a commented rum.yaml for this directory, pointing editors at rum's JSON
// Schema. Never overwrites one that exists.
import { open } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { RumError } from '../../errors.js';
import { Output } from '../output.js';

// dist/rum.schema.json is written by `make build` (`rum schema` > file); this module runs from
// dist/bundle/ or dist/src/cli/commands/.
const here = fileURLToPath(import.meta.url);
const schemaPath = `${here.slice(0, here.lastIndexOf('/dist/'))}/dist/rum.schema.json`;

export async function init(opts: { image?: string; json?: boolean; config?: string }): Promise<number> {
  const out = new Output(opts);
  const file = resolve(opts.config ?? join(process.cwd(), 'rum.yaml'));
  const image = opts.image ?? 'debian-12';
  if (/[\0\r\n]/.test(image)) throw new RumError('USAGE', '--image must be one line');
  const name = basename(resolve(file, '..'));
  const text = `# yaml-language-server: $schema=${schemaPath}
# rum.yaml: this project's VM. \`rum up\` creates it, \`rum ssh\` gets a shell, \`rum status\` shows it.
image:
  base: ${stringify(image).trim()}   # debian-12, debian-13, ubuntu-22.04, ubuntu-24.04, an http(s) URL or a path
resources: { cpus: 2, memory: 2G, disk: 20G }
# network: { mode: nat }      # nat (libvirt's default network) or user (QEMU user networking)
mounts:
  - { source: ., target: /work }   # this directory, live in the guest (virtiofs, or 9p)
# ports:
#   - { host: 8080, guest: 8080 }  # 127.0.0.1:8080 on the host reaches the guest's 8080
provision:
  packages: []
  # system: |      # once, at first boot
  #   apt-get install -y build-essential
  # boot: |        # at every boot
  #   echo booted
# name: ${name.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}   # default: this directory's name
`;
  const fh = await open(file, 'wx').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new RumError('USAGE', `${file} exists already`, 'edit it, or remove it first');
    throw err;
  });
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
  out.info(`wrote ${file}`);
  if (opts.json) out.data({ file });
  return 0;
}
