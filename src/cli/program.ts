// The commands and their options. Each command's module is imported only when it runs, so a
// fast command never pays to load ssh2, chokidar or execa.
import sade from 'sade';
import { RumError } from '../errors.js';

declare const RUM_VERSION: string | undefined;

export const program = sade('rum')
  .version(typeof RUM_VERSION === 'string' ? RUM_VERSION : '0.1.0')
  .describe('A project-local virtual machine through libvirt, declared in rum.yaml')
  .option('-c, --config', 'Path to rum.yaml (default: found in this directory or a parent)')
  .option('--json', 'Print data as JSON on stdout');

const lazy =
  <A extends unknown[]>(load: () => Promise<(...args: A) => Promise<number>>) =>
  async (...args: A) =>
    (await load())(...args);

program
  .command('up [names]')
  .describe('Build what is stale and start the VM; with machines: those named (and what they need), or all')
  .option('-n, --dry-run', 'Show what is stale and why; change nothing (exit 10 when something would change)')
  .option('--reset', 'Recreate the disk and seed: a fresh first boot (asks first; -y skips)')
  .option('--drop-snapshots', 'With --reset: delete the snapshots with the old disk (else --reset refuses while there are any)')
  .option('--restart', 'Restart a running VM whose definition changed')
  .option('-y, --yes', 'Do not ask for confirmation')
  .option('--attach', 'Then stay in the foreground with the port forwards (nat) and the inotify bridge, until Ctrl-C')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .option('--locked', 'Use rum.lock as it is: fail when it is missing or does not match rum.yaml (for CI)')
  .example('up')
  .example('up web db')
  .action(lazy(async () => (await import('./commands/up.js')).up));

program
  .command('build [targets]')
  .describe('Build the named targets and what they need, nothing else (like make TARGET)')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .example('build user-data seed-iso')
  .action(lazy(async () => (await import('./commands/build.js')).build));

program
  .command('update')
  .describe("Resolve rum.yaml's base images again (a moved `latest`), show what changes, and write rum.lock")
  .option('-n, --dry-run', 'Show what would change; write nothing (exit 10 when something would change)')
  .option('--no-wait', 'Fail at once if another rum is working on this project')
  .action(lazy(async () => (await import('./commands/update.js')).update));

program
  .command('status')
  .describe("The VM's state, address, uptime, resources, mounts, ports and every node fresh or stale")
  .action(lazy(async () => (await import('./commands/status.js')).status));

program
  .command('list')
  .describe('Every VM of this user on this machine: state, SSH address, disk use and project (no rum.yaml needed)')
  .action(lazy(async () => (await import('./commands/list.js')).list));

program
  .command('down [names]')
  .describe('Shut the guest down (ACPI), waiting up to --timeout; the disk is kept. With machines: those named, or all')
  .option('-t, --timeout', 'Seconds to wait for the guest to power off', 60)
  .option('-f, --force', 'Pull the plug when it does not power off in time')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .action(lazy(async () => (await import('./commands/down.js')).down));

program
  .command('suspend [names]')
  .describe("Save the guest's memory and stop it; `rum up` resumes it as it was. With machines: those named, or all")
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .action(lazy(async () => (await import('./commands/suspend.js')).suspend));

program
  .command('snapshot [what]')
  .describe('Snapshots of the VM\'s disk: rum snapshot save | list | restore | rm (each has --help)')
  .action(async (what: string | undefined) =>
    usage(what === undefined ? 'rum snapshot needs what to do' : `there is no snapshot command ${JSON.stringify(what)}`, 'rum snapshot save NAME | list | restore NAME | rm NAME'),
  );

program
  .command('snapshot save <name> [name2]')
  .describe("Freeze the VM's disk as a read-only layer named NAME; the guest goes on above it (running or not). With machines: MACHINE NAME")
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .example('snapshot save clean-install')
  .example('snapshot save web before-migration')
  .action(lazy(async () => (await import('./commands/snapshot.js')).snapshotSave));

program
  .command('snapshot list [machine]')
  .describe('The snapshots: name, when, size, and which one the disk sits on')
  .action(lazy(async () => (await import('./commands/snapshot.js')).snapshotList));

program
  .command('snapshot restore <name> [name2]')
  .describe('Put the disk back as it was at NAME (stops the guest, asks first; -y skips); `rum up` boots it. With machines: MACHINE NAME')
  .option('-y, --yes', 'Do not ask for confirmation')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .action(lazy(async () => (await import('./commands/snapshot.js')).snapshotRestore));

program
  .command('snapshot rm <name> [name2]')
  .describe('Delete a snapshot; a layer others sit on is merged into them first. With machines: MACHINE NAME')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .action(lazy(async () => (await import('./commands/snapshot.js')).snapshotRm));

program
  .command('exec')
  .describe('Run a command in the guest (over SSH); exits with its status. With machines: name one first')
  .example('exec -- uname -a')
  .example('exec web -- uname -a')
  .action(lazy(async () => (await import('./commands/exec.js')).exec));

program
  .command('ssh')
  .describe("A shell in the guest with OpenSSH (the VM's key, pinned host key); extra args after --. With machines: name one")
  .action(lazy(async () => (await import('./commands/ssh.js')).ssh));

program
  .command('watch')
  .describe('Replay host edits in inotify: true mounts in the guest so its file watchers fire, until Ctrl-C')
  .action(lazy(async () => (await import('./commands/watch.js')).watch));

program
  .command('forward')
  .describe("Forward rum.yaml's ports to the guest over SSH (nat mode), until Ctrl-C")
  .action(lazy(async () => (await import('./commands/forward.js')).forward));

program
  .command('ssh-config')
  .describe('A Host block for ~/.ssh/config (ssh, scp, rsync, VS Code Remote-SSH)')
  .action(lazy(async () => (await import('./commands/ssh-config.js')).sshConfig));

program
  .command('provision')
  .describe("Run rum.yaml's provision scripts again in the guest (both, or --system / --boot)")
  .option('--system', 'Only provision.system')
  .option('--boot', 'Only provision.boot')
  .action(lazy(async () => (await import('./commands/provision.js')).provision));

program
  .command('init')
  .describe('Write a commented rum.yaml here (never overwrites one)')
  .option('--image', 'image.base for it', 'debian-12')
  .action(lazy(async () => (await import('./commands/init.js')).init));

program
  .command('cp <src> <dst>')
  .describe('Copy files or directories to or from the guest; `:path` marks the guest side')
  .option('-r, --recursive', 'Accepted for habit: directories are always copied whole')
  .example('cp ./src :/home/rum/src')
  .example('cp :/var/log/cloud-init.log .')
  .example('cp ./src web:/home/rum/src   (with machines: NAME:path)')
  .action(lazy(async () => (await import('./commands/cp.js')).cp));

program
  .command('logs')
  .describe("cloud-init's output log from the guest; --console: the serial console; --provision: the provision scripts")
  .option('-f, --follow', 'Keep printing as the log grows (Ctrl-C ends)')
  .option('--console', 'The serial console log (works even when SSH never came up)')
  .option('--provision', 'Output and exit status of provision.system and provision.boot')
  .action(lazy(async () => (await import('./commands/logs.js')).logs));

program
  .command('destroy [names]')
  .describe('Stop and delete the VM and its disk (the shared image cache stays). With machines: those named, or all')
  .option('-y, --yes', 'Do not ask for confirmation')
  .option('--no-wait', 'Fail at once if another rum is working on this VM')
  .action(lazy(async () => (await import('./commands/destroy.js')).destroy));

program
  .command('images')
  .describe('Every cached base image and provisioned layer (and local image a VM sits on): size, origin, and which VMs use it')
  .action(lazy(async () => (await import('./commands/images.js')).images));

program
  .command('gc')
  .describe('Remove the cached images and layers no VM uses; refuses while a `rum up`, `build` or `update` uses the cache')
  .option('-n, --dry-run', 'List what would go and the space it would free; remove nothing')
  .action(lazy(async () => (await import('./commands/gc.js')).gc));

program
  .command('graph')
  .describe("Show the build graph (every machine's) with each node's state")
  .option('--format', 'text | dot | mermaid | json', 'text')
  .action(lazy(async () => (await import('./commands/graph.js')).graph));

program
  .command('doctor')
  .describe('Check this host for what rum needs (KVM, libvirt, network, tools, disk), each with its fix; changes nothing')
  .action(lazy(async () => (await import('./commands/doctor.js')).doctor));

program
  .command('schema')
  .describe('Print the JSON Schema of rum.yaml (for yaml-language-server)')
  .action(lazy(async () => (await import('./commands/schema.js')).schema));

export function usage(message: string, hint?: string): never {
  throw new RumError('USAGE', message, hint ?? 'see rum --help');
}
