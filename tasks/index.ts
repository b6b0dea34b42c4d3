// The rules rum knows, in no particular order: edges come from each rule's deps.
import type { AnyRule } from '../src/graph/rule.js';
import { baseImage } from './base-image.js';
import type { RumCtx } from './context.js';
import { definedDomain } from './defined-domain.js';
import { layer } from './layer.js';
import { domainXml } from './domain-xml.js';
import { metaData } from './meta-data.js';
import { overlay } from './overlay.js';
import { projectNetwork } from './project-network.js';
import { runningDomain } from './running-domain.js';
import { seedIso } from './seed-iso.js';
import { sshKeys } from './ssh-keys.js';
import { sshPort } from './ssh-port.js';
import { sshReady } from './ssh-ready.js';
import { userData } from './user-data.js';

/** The nodes `after:` joins between machines: a machine starts once another answers. */
export const machineOrder = { start: runningDomain.id, ready: sshReady.id };

export const rules: AnyRule<RumCtx>[] = [
  baseImage,
  sshKeys,
  metaData,
  userData,
  seedIso,
  layer,
  overlay,
  projectNetwork,
  sshPort,
  domainXml,
  definedDomain,
  runningDomain,
  sshReady,
];
