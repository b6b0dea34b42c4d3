// Owns: what every rum rule reads: the loaded config, the VM directory, the run's options and
// the instance generation. Infrastructure is imported lazily by the rules that use it.
import type { Config } from '../src/config/schema.js';
import type { VmDir } from '../src/paths.js';

export interface RumCtx {
  config: Config;
  vm: VmDir;
  env: NodeJS.ProcessEnv;
  /** Bumped by --reset; the guest's instance-id comes from it. */
  generation: number;
}
