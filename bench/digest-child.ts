// One digest of a file through rum's stat-keyed cache, in its own process so /proc/self/io
// counts exactly the bytes this digest read. Prints {ms, readBytes}.
import { readFileSync } from 'node:fs';
import { DigestCache, initDigests } from '../src/graph/digest.js';

const [file, cacheFile] = process.argv.slice(2) as [string, string];
const rchar = () => Number(/rchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
await initDigests();
const cache = await DigestCache.open(cacheFile);
// Reading /proc/self/io is itself a read: measure what one probe costs and take it off.
const probe = -(rchar() - rchar());
const before = rchar();
const t0 = process.hrtime.bigint();
await cache.digest(file);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const readBytes = rchar() - before - probe;
await cache.save();
process.stdout.write(JSON.stringify({ ms, readBytes }));
