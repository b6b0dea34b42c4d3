// Owns: the <domainsnapshot> that moves a running guest's disk onto a new top file: disk-only,
// external, onto a file rum made itself (virsh --reuse-external), so its header already names
// the backing file by the path rum chose.
import { isAbsolute } from 'node:path';
import { el, refuseProblems, renderXml, textProblems } from './xml.js';

export interface DiskSnapshotSpec {
  /** The guest's disk, as the domain names it (vda). */
  target: string;
  /** The new top: the file QEMU writes from now on. */
  file: string;
  /** As the domain's own disk: the file keeps its owner, QEMU reaches it by an ACL. */
  keepOwners: boolean;
}

export function diskSnapshotXml(spec: DiskSnapshotSpec): string {
  const problems: string[] = [];
  if (!/^vd[a-z]$/.test(spec.target)) problems.push(`target is not a virtio disk name: ${JSON.stringify(spec.target)}`);
  if (textProblems(problems, 'file', spec.file) && !isAbsolute(spec.file)) problems.push(`file is not an absolute path: ${JSON.stringify(spec.file)}`);
  refuseProblems('disk snapshot XML', spec.target, problems);
  return renderXml(
    el(
      'domainsnapshot',
      {},
      el(
        'disks',
        {},
        el(
          'disk',
          { name: spec.target, snapshot: 'external', type: 'file' },
          el('driver', { type: 'qcow2' }),
          el('source', { file: spec.file }, spec.keepOwners && el('seclabel', { model: 'dac', relabel: 'no' })),
        ),
      ),
    ),
  );
}
