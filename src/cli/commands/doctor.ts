// `rum doctor`: checks this host for what rum needs (KVM, libvirt and its group, the NAT network,
// QEMU's access to rum's directories, AppArmor/SELinux, the tools, free space), each with the
// command that mends it. Looks only: it never starts, installs or changes anything.
import { ConfigError, exitCodes, isRumError } from '../../errors.js';
import type { DoctorTarget } from '../../host/check.js';
import { runChecks } from '../../host/doctor.js';
import { Output } from '../output.js';

export interface DoctorOptions {
  config?: string;
  json?: boolean;
}

const DEFAULT_URI = 'qemu:///system';

export async function doctor(opts: DoctorOptions): Promise<number> {
  const out = new Output(opts);
  const report = await runChecks(await targetFor(opts));
  out.doctor(report);
  return report.ok ? 0 : exitCodes.FAILED;
}

/** rum.yaml's URI and network when it loads; a missing or broken one falls back to the default. */
async function targetFor(opts: DoctorOptions, env = process.env): Promise<DoctorTarget> {
  const { loadProject } = await import('../../config/load.js');
  try {
    const c = (await loadProject({ ...(opts.config === undefined ? {} : { file: opts.config }), env })).machines[0]!;
    return { uri: c.libvirt.uri, uriFrom: `URI from ${c.file}`, network: { mode: c.network.mode, name: c.network.name }, env };
  } catch (err) {
    const fallback = (why: string): DoctorTarget => ({
      uri: DEFAULT_URI,
      uriFrom: `URI: the default, ${why}`,
      network: { mode: 'nat', name: 'default' },
      env,
    });
    if (err instanceof ConfigError) {
      const d = err.diagnostics;
      const n = d.length === 1 ? 'a problem' : `${d.length} problems`;
      return fallback(`as ${d[0]?.file ?? 'rum.yaml'} has ${n} (\`rum up --dry-run\` lists them)`);
    }
    if (isRumError(err) && /^no rum\.yaml/.test(err.message)) return fallback('no rum.yaml here');
    return fallback(`as rum.yaml could not be read (${err instanceof Error ? err.message : String(err)})`);
  }
}
