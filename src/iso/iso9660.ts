// Owns: turning a few named files into an ISO 9660 image, the same bytes for the same files.
// Not: what the files say (src/cloudinit/) or where the image is written (src/files/atomic.ts).
//
// The image carries one flat root directory in three namespaces, like
// `genisoimage -volid cidata -joliet -rock`: 8.3 primary names (every reader), Rock Ridge
// names on those records (Linux, xorriso) and a Joliet tree (Windows, blkid, isoinfo -J).
// Formats: ECMA-119 (ISO 9660), IEEE P1281 (SUSP) / P1282 (RRIP 1.10), Joliet (Microsoft 1995).

import { RumError } from '../errors.js';

export interface IsoFile {
  name: string;
  data: Uint8Array | string; // a string is written as UTF-8
}

const SECTOR = 2048;
// Block numbers: 0-15 system area; volume descriptors, then the four path tables, then the
// directories, the Rock Ridge continuation area and file data, each at a sector boundary.
const PVD_BLOCK = 16;
const SVD_BLOCK = 17;
const TERMINATOR_BLOCK = 18;
const FIRST_PATH_TABLE_BLOCK = 19; // primary L, primary M, Joliet L, Joliet M
const FIRST_DIR_BLOCK = 23;

// No clock: one fixed instant everywhere a date goes, so identical inputs give identical bytes.
const FIXED = { year: 1980, month: 1, day: 1 } as const;

// Joliet identifiers hold at most 64 UCS-2 characters (no ';1' version, as genisoimage writes them).
const MAX_NAME_UTF16 = 64;
// Keeps a file's record (33 + 8.3 id + PX + TF + NM) under the 255-byte record limit without CE.
const MAX_NAME_UTF8 = 128;

// ASCII control characters, the path separator, and what Joliet forbids in a name.
const FORBIDDEN_IN_NAME = /[\u0000-\u001f\u007f/\\*:;?]/;

interface Entry {
  name: string;
  data: Buffer;
  primaryId: Buffer; // 'META_DAT.;1'
  jolietId: Buffer; // UCS-2BE 'meta-data'
  rockRidge: Buffer; // PX, TF, NM
  block: number; // 0 for an empty file: there is no extent to point at
}

/** The image for `files` in a flat root directory labelled `volumeId`. Deterministic. */
export function buildIso(opts: { volumeId: string; files: IsoFile[] }): Buffer {
  checkVolumeId(opts.volumeId);
  const entries = toEntries(opts.files);

  // Rock Ridge is announced by SP and ER in the root's '.' record. ER (237 bytes) does not fit
  // beside the rest in a 255-byte record, so CE points to it in a block of its own, as in genisoimage.
  const rootSu = (erBlock: number) => Buffer.concat([SP, px(DIR_MODE, 2), TF, ce(erBlock)]);
  const dotDotSu = Buffer.concat([px(DIR_MODE, 2), TF]);
  const byPrimary = [...entries].sort((a, b) => Buffer.compare(primarySortKey(a), primarySortKey(b)));
  const byJoliet = [...entries].sort((a, b) => Buffer.compare(a.jolietId, b.jolietId));

  const primaryLayout = packRecords([
    recordLength(1, rootSu(0).length),
    recordLength(1, dotDotSu.length),
    ...byPrimary.map((e) => recordLength(e.primaryId.length, e.rockRidge.length)),
  ]);
  const jolietLayout = packRecords([
    recordLength(1, 0),
    recordLength(1, 0),
    ...byJoliet.map((e) => recordLength(e.jolietId.length, 0)),
  ]);

  const primaryRoot = { block: FIRST_DIR_BLOCK, size: primaryLayout.size };
  const jolietRoot = { block: primaryRoot.block + primaryLayout.size / SECTOR, size: jolietLayout.size };
  const continuationBlock = jolietRoot.block + jolietLayout.size / SECTOR;
  let next = continuationBlock + 1;
  for (const e of byPrimary) {
    if (e.data.length === 0) continue;
    e.block = next;
    next += sectors(e.data.length);
  }
  const totalBlocks = next;

  const out = Buffer.alloc(totalBlocks * SECTOR); // zeroed: the system area and all padding
  writeVolumeDescriptor(out, PVD_BLOCK, {
    type: 1,
    volumeId: ascii(opts.volumeId, 32),
    text: (len) => Buffer.alloc(len, 0x20),
    escapes: Buffer.alloc(0),
    totalBlocks,
    pathTableBlocks: [FIRST_PATH_TABLE_BLOCK, FIRST_PATH_TABLE_BLOCK + 1],
    root: primaryRoot,
  });
  writeVolumeDescriptor(out, SVD_BLOCK, {
    type: 2,
    volumeId: ucs2Padded(opts.volumeId, 32),
    text: (len) => ucs2Padded('', len),
    escapes: Buffer.from('%/E', 'latin1'), // UCS-2 level 3: the Joliet marker
    totalBlocks,
    pathTableBlocks: [FIRST_PATH_TABLE_BLOCK + 2, FIRST_PATH_TABLE_BLOCK + 3],
    root: jolietRoot,
  });
  writeTerminator(out, TERMINATOR_BLOCK);
  writePathTables(out, FIRST_PATH_TABLE_BLOCK, primaryRoot.block);
  writePathTables(out, FIRST_PATH_TABLE_BLOCK + 2, jolietRoot.block);

  ER.copy(out, continuationBlock * SECTOR);

  writeDirectory(out, primaryRoot, primaryLayout.offsets, [
    { id: DOT, extent: primaryRoot, dir: true, su: rootSu(continuationBlock) },
    { id: DOTDOT, extent: primaryRoot, dir: true, su: dotDotSu },
    ...byPrimary.map((e) => ({ id: e.primaryId, extent: fileExtent(e), dir: false, su: e.rockRidge })),
  ]);
  writeDirectory(out, jolietRoot, jolietLayout.offsets, [
    { id: DOT, extent: jolietRoot, dir: true, su: EMPTY },
    { id: DOTDOT, extent: jolietRoot, dir: true, su: EMPTY },
    ...byJoliet.map((e) => ({ id: e.jolietId, extent: fileExtent(e), dir: false, su: EMPTY })),
  ]);
  for (const e of entries) e.data.copy(out, e.block * SECTOR);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Input

function checkVolumeId(id: string): void {
  // d-characters, plus lowercase: NoCloud looks for the label 'cidata', which genisoimage writes
  // as given. At most 16 so the Joliet descriptor (16 UCS-2 characters) carries the same label.
  if (!/^[A-Za-z0-9_]{1,16}$/.test(id))
    throw bug(`ISO volume id ${JSON.stringify(id)} must be 1-16 characters from A-Z a-z 0-9 _`);
}

function toEntries(files: IsoFile[]): Entry[] {
  const seen = new Set<string>();
  for (const f of files) {
    checkName(f.name);
    if (seen.has(f.name)) throw bug(`ISO file name ${JSON.stringify(f.name)} appears twice`);
    seen.add(f.name);
  }
  // Mangle in code-unit order, not input or locale order: which of two clashing names gets
  // the '1' suffix must depend on the names alone.
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const taken = new Set<string>();
  return sorted.map((f) => {
    const data = typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : Buffer.from(f.data);
    return {
      name: f.name,
      data,
      primaryId: Buffer.from(primaryName(f.name, taken), 'ascii'),
      jolietId: ucs2(f.name),
      rockRidge: Buffer.concat([px(FILE_MODE, 1), TF, nm(f.name)]),
      block: 0,
    };
  });
}

function checkName(name: string): void {
  const shown = JSON.stringify(name);
  if (name === '' || name === '.' || name === '..') throw bug(`ISO file name ${shown} is not a file name`);
  if (FORBIDDEN_IN_NAME.test(name))
    throw bug(`ISO file name ${shown} has a character not allowed in a flat Joliet name (/ \\ * : ; ? or control)`);
  if (/[\ud800-\udfff]/.test(name)) throw bug(`ISO file name ${shown} is outside UCS-2, which Joliet cannot hold`);
  if (name.length > MAX_NAME_UTF16 || Buffer.byteLength(name, 'utf8') > MAX_NAME_UTF8)
    throw bug(`ISO file name ${shown} is too long (at most ${MAX_NAME_UTF16} characters)`);
}

/** A unique ISO level 1 identifier: 'network-config' -> 'NETWORK_.;1', a clash -> 'NETWORK1.;1'. */
function primaryName(name: string, taken: Set<string>): string {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot + 1)] : [name, ''];
  const d = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const base = d(stem).slice(0, 8);
  const suffix = d(ext).slice(0, 3);
  for (let n = 0; ; n++) {
    const tag = n === 0 ? '' : String(n);
    const id = `${base.slice(0, 8 - tag.length)}${tag}.${suffix};1`;
    if (!taken.has(id)) {
      taken.add(id);
      return id;
    }
  }
}

// ECMA-119 9.3: records sort by name, then extension, each padded with spaces.
function primarySortKey(e: Entry): Buffer {
  const [stem = '', rest = ''] = e.primaryId.toString('ascii').split('.');
  return Buffer.from(stem.padEnd(8) + (rest.split(';')[0] ?? '').padEnd(3), 'ascii');
}

// ---------------------------------------------------------------------------------------------
// Rock Ridge (SUSP entries: two-letter signature, length, version 1, payload)

const DIR_MODE = 0o040555; // read-only medium: no write bits, as `genisoimage -r` reports
const FILE_MODE = 0o100444;
const EMPTY = Buffer.alloc(0);
const DOT = Buffer.from([0]);
const DOTDOT = Buffer.from([1]);

function susp(sig: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(sig, 'ascii'), Buffer.from([4 + payload.length, 1]), payload]);
}

const SP = susp('SP', Buffer.from([0xbe, 0xef, 0])); // SUSP in use, no bytes skipped
const ER_ID = 'RRIP_1991A';
const ER_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const ER_SOURCE =
  'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';
const ER = susp(
  'ER',
  Buffer.concat([
    Buffer.from([ER_ID.length, ER_DESCRIPTOR.length, ER_SOURCE.length, 1]),
    Buffer.from(ER_ID + ER_DESCRIPTOR + ER_SOURCE, 'ascii'),
  ]),
);
// Modification, access and attribute-change times, all the fixed instant (short form).
const TF = susp('TF', Buffer.concat([Buffer.from([0b1110]), dirDate(), dirDate(), dirDate()]));

/** RRIP 1.10 PX: mode, links, uid, gid (no serial number field: that is 1.12). */
function px(mode: number, links: number): Buffer {
  const b = Buffer.alloc(32);
  [mode, links, 0, 0].forEach((v, i) => both32(b, i * 8, v));
  return susp('PX', b);
}

function nm(name: string): Buffer {
  return susp('NM', Buffer.concat([Buffer.from([0]), Buffer.from(name, 'utf8')]));
}

/** Continuation: the ER entry, alone at the start of its own block. */
function ce(block: number): Buffer {
  const b = Buffer.alloc(24);
  both32(b, 0, block);
  both32(b, 8, 0);
  both32(b, 16, ER.length);
  return susp('CE', b);
}

// ---------------------------------------------------------------------------------------------
// ECMA-119 structures

interface Extent {
  block: number;
  size: number;
}

interface DirRecord {
  id: Buffer;
  extent: Extent;
  dir: boolean;
  su: Buffer; // system use area: Rock Ridge entries
}

const fileExtent = (e: Entry): Extent => ({ block: e.block, size: e.data.length });
const sectors = (bytes: number) => Math.ceil(bytes / SECTOR);

function recordLength(idLength: number, suLength: number): number {
  const padded = idLength % 2 === 0 ? idLength + 1 : idLength; // system use starts at an even offset
  const len = 33 + padded + suLength;
  if (len > 255) throw bug(`ISO directory record of ${len} bytes exceeds 255`);
  return len;
}

/** Where each record goes in its directory: a record never crosses a sector boundary. */
function packRecords(lengths: number[]): { offsets: number[]; size: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const len of lengths) {
    if ((at % SECTOR) + len > SECTOR) at = sectors(at) * SECTOR;
    offsets.push(at);
    at += len;
  }
  return { offsets, size: sectors(at) * SECTOR };
}

function writeDirectory(out: Buffer, dir: Extent, offsets: number[], records: DirRecord[]): void {
  records.forEach((r, i) => {
    const at = dir.block * SECTOR + (offsets[i] ?? 0);
    const len = recordLength(r.id.length, r.su.length);
    out[at] = len;
    both32(out, at + 2, r.extent.block);
    both32(out, at + 10, r.extent.size);
    dirDate().copy(out, at + 18);
    out[at + 25] = r.dir ? 2 : 0;
    both16(out, at + 28, 1); // volume sequence number
    out[at + 32] = r.id.length;
    r.id.copy(out, at + 33);
    r.su.copy(out, at + len - r.su.length);
  });
}

function writeVolumeDescriptor(
  out: Buffer,
  block: number,
  d: {
    type: 1 | 2;
    volumeId: Buffer;
    text: (len: number) => Buffer; // a blank a-character (or UCS-2) field
    escapes: Buffer;
    totalBlocks: number;
    pathTableBlocks: [number, number];
    root: Extent;
  },
): void {
  const at = block * SECTOR;
  const v = out.subarray(at, at + SECTOR);
  header(v, d.type);
  d.text(32).copy(v, 8); // system identifier
  d.volumeId.copy(v, 40);
  both32(v, 80, d.totalBlocks);
  d.escapes.copy(v, 88);
  both16(v, 120, 1); // volume set size
  both16(v, 124, 1); // volume sequence number
  both16(v, 128, SECTOR);
  both32(v, 132, PATH_TABLE_SIZE);
  v.writeUInt32LE(d.pathTableBlocks[0], 140);
  v.writeUInt32BE(d.pathTableBlocks[1], 148);
  writeDirectory(out, { block, size: 0 }, [156], [{ id: DOT, extent: d.root, dir: true, su: EMPTY }]);
  for (const [offset, len] of [[190, 128], [318, 128], [446, 128], [574, 128], [702, 37], [739, 37], [776, 37]] as const)
    d.text(len).copy(v, offset); // volume set, publisher, preparer, application, three file ids
  volumeDate(true).copy(v, 813); // creation
  volumeDate(true).copy(v, 830); // modification
  volumeDate(false).copy(v, 847); // expiration: none
  volumeDate(false).copy(v, 864); // effective: none
  v[881] = 1; // file structure version
}

function writeTerminator(out: Buffer, block: number): void {
  header(out.subarray(block * SECTOR), 255);
}

function header(v: Buffer, type: number): void {
  v[0] = type;
  v.write('CD001', 1, 'ascii');
  v[6] = 1;
}

// A path table with only the root: length of id 1, location, parent 1, id 0x00, one pad byte.
const PATH_TABLE_SIZE = 10;
function writePathTables(out: Buffer, firstBlock: number, rootBlock: number): void {
  const l = firstBlock * SECTOR;
  const m = (firstBlock + 1) * SECTOR;
  out[l] = out[m] = 1;
  out.writeUInt32LE(rootBlock, l + 2);
  out.writeUInt32BE(rootBlock, m + 2);
  out.writeUInt16LE(1, l + 6);
  out.writeUInt16BE(1, m + 6);
}

/** Directory record date: years since 1900, month, day, h, m, s, GMT offset. */
function dirDate(): Buffer {
  return Buffer.from([FIXED.year - 1900, FIXED.month, FIXED.day, 0, 0, 0, 0]);
}

/** Volume descriptor date: 'YYYYMMDDHHMMSScc' and GMT offset; all '0' digits means "not set". */
function volumeDate(set: boolean): Buffer {
  const p = (n: number, w: number) => String(n).padStart(w, '0');
  const digits = set ? `${p(FIXED.year, 4)}${p(FIXED.month, 2)}${p(FIXED.day, 2)}00000000` : '0'.repeat(16);
  return Buffer.concat([Buffer.from(digits, 'ascii'), Buffer.from([0])]);
}

// ---------------------------------------------------------------------------------------------
// Bytes

function both16(b: Buffer, at: number, v: number): void {
  b.writeUInt16LE(v, at);
  b.writeUInt16BE(v, at + 2);
}

function both32(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v, at);
  b.writeUInt32BE(v, at + 4);
}

function ascii(s: string, len: number): Buffer {
  return Buffer.from(s.padEnd(len), 'ascii');
}

function ucs2(s: string): Buffer {
  return Buffer.from(s, 'utf16le').swap16(); // Joliet is big-endian
}

function ucs2Padded(s: string, len: number): Buffer {
  const b = Buffer.alloc(len); // an odd trailing byte stays 0
  ucs2(s.padEnd(Math.floor(len / 2))).copy(b);
  return b;
}

function bug(message: string): RumError {
  return new RumError('BUG', message);
}
