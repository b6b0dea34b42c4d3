// What rum reads of cloud-init's own account of a boot, and what it asks cloud-init to run
// after sshd. The JSON shapes are copied from a Debian 12 guest (cloud-init 22.4.2).
import '../helpers/no-network.js'; // first: a unit test never reaches the network (see there)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cloudInitErrors, modulesAfterSshd, workAfterSshd } from '../../src/cloudinit/modules.js';

const result = (errors: string[]) => JSON.stringify({ v1: { datasource: 'DataSourceNoCloud [seed=/dev/sr0][dsmode=net]', errors } }, null, 1);
const stage = (errors: string[] = []) => ({ errors, finished: 1795529736.05, start: 1795529734.44 });
const status = (init: string[]) =>
  JSON.stringify({ v1: { datasource: 'DataSourceNoCloud', init: stage(init), 'init-local': stage(), 'modules-config': stage(), 'modules-final': { errors: [], finished: null, start: null }, stage: null } }, null, 1);

test('cloud-init errors are read from result.json and from status.json, each once', () => {
  assert.deepEqual(cloudInitErrors(result([])), []);
  assert.deepEqual(cloudInitErrors(result(["('scripts-per-boot', RuntimeError('Runparts: 1 failures'))"])), ["('scripts-per-boot', RuntimeError('Runparts: 1 failures'))"]);
  assert.deepEqual(cloudInitErrors(status([])), []);
  assert.deepEqual(cloudInitErrors(status(["('bootcmd', ProcessExecutionError())"])), ["('bootcmd', ProcessExecutionError())"]);
  assert.deepEqual(cloudInitErrors(''), [], 'no status file: nothing known to be wrong');
  assert.match(cloudInitErrors('{"v1": ')[0]!, /not JSON/);
});

test('after sshd cloud-init runs only what the user asked for', () => {
  const none = {};
  // scripts-per-boot always: the warm-boot recorder runs there (src/cloudinit/warm-boot.ts).
  assert.deepEqual(modulesAfterSshd(none), { config: [], final: ['scripts-per-boot', 'final-message'] });
  assert.equal(workAfterSshd(none), false, 'nothing to wait for after the login');
  assert.equal(workAfterSshd({ aptSources: ['deb http://10.0.2.2 ./'] }), true);
  assert.equal(workAfterSshd({ boot: 'echo hi' }), true);
  assert.equal(workAfterSshd({ system: '' }), true, 'an empty script is still a script');
  assert.deepEqual(modulesAfterSshd({ aptSources: ['deb [trusted=yes] http://10.0.2.2:8080 ./'] }).config, ['apt-configure']);
  assert.deepEqual(modulesAfterSshd({ aptSources: [] }).config, []);
});
