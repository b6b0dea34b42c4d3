// Owns: which cloud-init modules run after the guest's sshd starts (cloud-init's config and final
// stages). Every one of them is time added to `rum up`, so only what rum's user-data needs runs
// there. The image's own lists (grub-dpkg, set-passwords, locale, keys-to-console, ...) cost
// about 4 s under TCG and do nothing rum uses. Also: reading cloud-init's own account of a boot.
// No dependencies: fast commands plan with it.

export interface ProvisionNeeds {
  aptSources?: readonly string[];
  system?: string;
  boot?: string;
}

export function modulesAfterSshd(n: ProvisionNeeds): { config: string[]; final: string[] } {
  return {
    config: n.aptSources && n.aptSources.length > 0 ? ['apt-configure'] : [],
    final: [
      // Always: the provision runner when there are scripts, and the warm-boot recorder, which
      // notes that cloud-init finished with this seed (warm-boot.ts).
      'scripts-per-boot',
      'final-message', // "Cloud-init ... finished" in its log, for `rum logs`
    ],
  };
}

/** Whether cloud-init has work the user asked for after sshd starts (so `up` waits for it). */
export function workAfterSshd(n: ProvisionNeeds): boolean {
  return (n.aptSources?.length ?? 0) > 0 || n.system !== undefined || n.boot !== undefined;
}

/**
 * cloud-init's errors (or, on a warm boot, rum-boot.service's, in the same shape), from result.json ({v1: {errors}}) or status.json ({v1: {<stage>: {errors}}}).
 * Its "recoverable" errors (newer releases) are warnings, not failures.
 */
export function cloudInitErrors(json: string): string[] {
  if (json.trim() === '') return [];
  try {
    const v1 = (JSON.parse(json) as { v1?: Record<string, unknown> }).v1 ?? {};
    const lists = [v1.errors, ...Object.values(v1).map((s) => (s as { errors?: unknown } | null)?.errors)];
    return lists.flatMap((l) => (Array.isArray(l) ? l.map(String) : []));
  } catch {
    return [`its status is not JSON: ${json.slice(0, 120)}`];
  }
}
