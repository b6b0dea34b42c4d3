// Owns: what every rum rule reads: its machine (config, directory, lifecycle operations), the
// project it belongs to, the run's environment and the instance generation.
import type { Pins } from '../src/config/lock-file.js';
import type { Config, Project } from '../src/config/schema.js';
import type { Machine } from '../src/machine/machine.js';
import type { VmDir } from '../src/paths.js';

export interface RumCtx {
  machine: Machine;
  /** The machine's config and directory (machine.config, machine.vm), named for brevity. */
  config: Config;
  vm: VmDir;
  project: Project;
  env: NodeJS.ProcessEnv;
  /** Bumped by --reset; the guest's instance-id comes from it. */
  generation: number;
  /** rum.lock's pins, by image.base as written (none: no lock yet). Read-only: the commands
   * resolve and write them before the graph is planned. */
  pins?: Pins;
}
