// Prints, as JSON, what rum learns about a domain from libvirt's socket and from virsh. The
// libvirt RPC test runs it as the user whose daemon it asks (root, or the test user's session).
import { rpcSnapshot } from '../../src/libvirt/rpc.js';
import { Virsh } from '../../src/libvirt/virsh.js';

const [uri, ...names] = process.argv.slice(2);
const out: Record<string, unknown> = {};
for (const name of names) {
  out[name] = {
    rpc: (await rpcSnapshot(uri!, name)) ?? null,
    virsh: await new Virsh(uri!, { env: { RUM_LIBVIRT_RPC: '0' } }).domainSnapshot(name),
  };
}
console.log(JSON.stringify(out));
