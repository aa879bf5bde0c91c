import type { FileHandle } from 'node:fs/promises';
import { open, rename } from 'node:fs/promises';
import { syncDir } from '../../kit/fs';
import { Bitfield } from '../wire/bitfield';

/*
 * The bitfield sidecar of a partial blob (`sha256-<hex>.bitfield`): which pieces of the .part
 * file are verified and durable. Layout: "shoal-bf" (8 bytes) | version 1 (1) |
 * info hash (32, raw) | piece count (uint32 BE) | bitfield in wire layout. It names the
 * metainfo it belongs to, so a sidecar left by another piece length is discarded rather than
 * trusted. Checkpoints rewrite only the bitfield, in place, at `sidecarHeaderLength`.
 */

const sidecarMagic = Buffer.from('shoal-bf', 'ascii');
const sidecarVersion = 1;
export const sidecarHeaderLength = sidecarMagic.length + 1 + 32 + 4;

/** The bitfield a sidecar holds, or undefined when it is missing or names another swarm. */
export const readSidecar = async (
  path: string,
  swarm: Buffer,
  pieceCount: number,
): Promise<Bitfield | undefined> => {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const expected = sidecarHeaderLength + Bitfield.byteLengthOf(pieceCount);
    const bytes = Buffer.alloc(expected);
    const { bytesRead } = await file.read(bytes, 0, expected, 0);
    if (bytesRead !== expected || (await file.stat()).size !== expected) return undefined;
    let at = 0;
    if (!bytes.subarray(0, sidecarMagic.length).equals(sidecarMagic)) return undefined;
    at += sidecarMagic.length;
    if (bytes.readUInt8(at) !== sidecarVersion) return undefined;
    at += 1;
    if (!bytes.subarray(at, at + 32).equals(swarm)) return undefined;
    at += 32;
    if (bytes.readUInt32BE(at) !== pieceCount) return undefined;
    at += 4;
    const field = bytes.subarray(at);
    if (!Bitfield.spareBitsClear(pieceCount, field)) return undefined;
    return new Bitfield(pieceCount, field);
  } finally {
    await file.close();
  }
};

/** Writes a fresh sidecar atomically (temp file, fsync, rename). */
export const writeSidecar = async (
  paths: { readonly dir: string; readonly sidecar: string },
  swarm: Buffer,
  present: Bitfield,
  fsync: boolean,
): Promise<void> => {
  const header = Buffer.alloc(sidecarHeaderLength);
  let at = sidecarMagic.copy(header, 0);
  at = header.writeUInt8(sidecarVersion, at);
  at += swarm.copy(header, at);
  header.writeUInt32BE(present.length, at);
  const temp = `${paths.sidecar}.tmp`;
  const file = await open(temp, 'w');
  try {
    await file.writev([header, present.toBuffer()], 0);
    if (fsync) await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, paths.sidecar);
  if (fsync) await syncDir(paths.dir);
};
