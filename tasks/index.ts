// The rules rum knows, in no particular order: edges come from each rule's deps.
import type { AnyRule } from '../src/graph/rule.js';
import type { RumCtx } from './context.js';
import { metaData } from './meta-data.js';
import { seedIso } from './seed-iso.js';
import { sshKeys } from './ssh-keys.js';
import { userData } from './user-data.js';

export const rules: AnyRule<RumCtx>[] = [sshKeys, metaData, userData, seedIso];
