// `rum build [TARGET...]`: build the named targets and what they need, nothing else.
import { Output } from '../output.js';
import { runGraph, subjectOf, throwIfFailed, type CommonOptions } from './common.js';

export async function build(first: string | undefined, opts: CommonOptions & { _: string[] }): Promise<number> {
  const out = new Output(opts);
  const targets = [first, ...(opts._ ?? [])].filter((t): t is string => typeof t === 'string' && t !== '');
  const { o, result } = await runGraph(out, opts, targets.length > 0 ? { targets } : {});
  throwIfFailed(result);
  out.result(result, subjectOf(o));
  return 0;
}
