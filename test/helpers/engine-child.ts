// A child process that runs the toy graph on a state file and hangs inside one node, so a test
// can kill it there (SIGKILL: no cleanup runs) and check what the next run does.
import { DigestCache, initDigests } from '../../src/graph/digest.js';
import { execute } from '../../src/graph/execute.js';
import { makePlan } from '../../src/graph/plan.js';
import { StateStore } from '../../src/graph/state.js';
import { toy, type ToyCtx, oneVm } from './toy-rules.js';

const [stateFile, hangIn] = process.argv.slice(2) as [string, string];
await initDigests();
const ctx: ToyCtx = {
  config: { a: '1', b: '2' },
  store: new Map(),
  builds: [],
  onBuild: async (id) => {
    if (id === hangIn) {
      process.stdout.write(`hanging in ${id}\n`);
      await new Promise(() => undefined);
    }
  },
};
// The toy store lives in memory, so every toy check() would fail in a new process: drop check().
const rules = [toy('a', { field: 'a' }), toy('b', { field: 'b' }), toy('c', { deps: ['a', 'b'] }), toy('d', { deps: ['c'] })].map(
  (r) => ({ ...r, check: undefined }),
);
const e = oneVm({ ctx, rules, state: await StateStore.open(stateFile), digests: await DigestCache.open(undefined), opts: {} });
await execute(e, await makePlan(e), { concurrency: 1 });
