// Owns: running every host check for `rum doctor` at once, each bounded in time, into one report.
// The checks live in libvirt-checks.ts and local-checks.ts; printing is the CLI's.
import { CHECK_IDS, type CheckId, type CheckResult, type DoctorTarget, type Finding } from './check.js';
import { checkGroup, checkLibvirt, checkNetwork } from './libvirt-checks.js';
import { checkDisk, checkHomeAccess, checkKvm, checkSecurity, checkTool, checkVirtiofsd } from './local-checks.js';

export type { CheckId, CheckResult, CheckStatus, DoctorTarget, Finding } from './check.js';

/** The report, as `rum doctor --json` prints it. ok: no check failed (warnings allowed). */
export interface DoctorReport {
  ok: boolean;
  uri: string;
  checks: CheckResult[];
}

export const CHECK_TIMEOUT_MS = 3000;

type Check = (t: DoctorTarget, signal: AbortSignal) => Promise<Finding>;

const CHECKS: Record<CheckId, Check> = {
  kvm: () => checkKvm(),
  libvirt: checkLibvirt,
  group: (t) => checkGroup(t),
  network: checkNetwork,
  'home-access': (t) => checkHomeAccess(t),
  security: checkSecurity,
  virtiofsd: (t) => checkVirtiofsd(t),
  qemu: (t, s) => checkTool('qemu', t, s),
  'qemu-img': (t, s) => checkTool('qemu-img', t, s),
  ssh: (t, s) => checkTool('ssh', t, s),
  disk: (t) => checkDisk(t),
};

/**
 * One check, given `ms` to answer: past that, its tools are killed and it reads "did not answer".
 * A check that throws reads as a warning naming the error: the doctor itself never fails a run.
 */
export async function withTimeout(id: CheckId, ms: number, check: (signal: AbortSignal) => Promise<Finding>): Promise<CheckResult> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Finding>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve({ status: 'warn', summary: `did not answer within ${+(ms / 1000).toFixed(1)} s` });
    }, ms);
  });
  const answer = check(controller.signal).catch(
    (err: unknown): Finding => ({ status: 'warn', summary: `could not check: ${err instanceof Error ? err.message : String(err)}` }),
  );
  try {
    return { id, ...(await Promise.race([answer, late])) };
  } finally {
    clearTimeout(timer);
  }
}

/** Every check at once (they are independent), reported in CHECK_IDS order. */
export async function runChecks(t: DoctorTarget, opts: { timeoutMs?: number; only?: CheckId[] } = {}): Promise<DoctorReport> {
  const ms = opts.timeoutMs ?? CHECK_TIMEOUT_MS;
  const ids = CHECK_IDS.filter((id) => !opts.only || opts.only.includes(id));
  const checks = await Promise.all(ids.map((id) => withTimeout(id, ms, (signal) => CHECKS[id](t, signal))));
  return reportOf(t.uri, checks);
}

export function reportOf(uri: string, checks: CheckResult[]): DoctorReport {
  return { ok: checks.every((c) => c.status !== 'fail'), uri, checks };
}
