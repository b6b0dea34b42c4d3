// cloud-init's view of a document: PyYAML's safe_load, as cloud-init itself loads user-data.
// One python process for a whole batch; values PyYAML makes that JSON has no word for (dates,
// sets, binary) come back tagged, so they can never compare equal to a string.
import { execFileSync } from 'node:child_process';

const LOADER = `
import json, sys, yaml
def plain(v):
    if isinstance(v, dict): return {str(k) if isinstance(k, str) else repr(k): plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    if v is None or isinstance(v, (str, bool, int)): return v
    if isinstance(v, float): return {"float": repr(v)}
    return {"python": type(v).__name__ + ":" + repr(v)}
out = []
for text in json.load(sys.stdin):
    try: out.append({"value": plain(yaml.safe_load(text))})
    except yaml.YAMLError as e: out.append({"error": str(e)})
json.dump(out, sys.stdout)
`;

export type Loaded = { value: unknown } | { error: string };

export function pyyamlLoad(texts: string[]): Loaded[] {
  const out = execFileSync('python3', ['-c', LOADER], { input: JSON.stringify(texts), maxBuffer: 256 << 20 });
  return JSON.parse(out.toString('utf8')) as Loaded[];
}
