import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Result } from '../../domain';
import { ShoalError, fail, ok } from '../../domain';
import { readvAll, syncDir } from '../../kit/fs';
import type { Metainfo } from '../metainfo';
import { infoHash, pieceBounds, pieceCountOf, validateMetainfo } from '../metainfo';
import { Bitfield } from '../wire/bitfield';
import { pieceRange, readFully, readRange } from './fileReads';
import type { PieceOutcome } from './pieceWriter';
import { PieceWriter } from './pieceWriter';
import { readSidecar, sidecarHeaderLength, writeSidecar } from './sidecar';

/*
 * Files of one blob in `dir`, named from its digest (`sha256:<hex>` → `sha256-<hex>`, no ':'
 * so the names are safe everywhere):
 *
 *   sha256-<hex>.part      the blob, pre-sized, pieces written in place at their offsets
 *   sha256-<hex>.bitfield  which pieces of the .part are verified and durable (sidecar.ts)
 *   sha256-<hex>           the complete blob, whole digest verified: its existence means complete
 *
 * The sidecar names the metainfo it belongs to (layout in `sidecar.ts`), so a sidecar left
 * by another piece length is discarded rather than trusted.
 *
 * Durability: pieces are written without fsync. Every `checkpointIntervalMs` (and on close)
 * a checkpoint fdatasyncs the .part and then writes the bitfield as it was before the sync, in
 * place. So the sidecar on disk only ever names pieces whose bytes reached the disk first, at
 * the cost of one fdatasync per interval instead of one per piece (an fsync per
 * piece would bound the download rate); a crash loses at most the last interval's pieces, which are fetched again. Bits only
 * go from 0 to 1 between checkpoints, so a torn sidecar write mixes old and new bits, each of
 * which is true. A process crash (kill -9) loses nothing the kernel has: only power loss or a
 * kernel crash reaches the fsync ordering.
 *
 * Reopening trusts the sidecar (cheap: no reads) unless `verify: 'full'` rehashes every
 * present piece. Trusting is safe because `finalize` checks the whole blob's digest before
 * the file becomes the content-addressed blob; should that ever fail, it rehashes every piece,
 * clears the bad ones and reports them for fetching again.
 *
 * The whole-digest check reads and hashes every byte a second time. With `wholeDigest:
 * 'when-resumed'` it is skipped when every piece was hashed on its way in by this store (so
 * the blob is exactly the pieces the metainfo names): the digest is then derived from the
 * pieces, and the metainfo's binding of piece hashes to the digest is trusted — it comes from
 * the origin that verified the blob (Kraken's agents trust it the same way). Pieces taken
 * from a sidecar were not hashed here, so a resumed download is still checked whole.
 */

const readChunk = 1024 * 1024;

/** The file name of a blob (complete) in a piece store's directory. */
export const blobFileName = (digest: string): string => digest.replace(':', '-');

export type PieceStoreOptions = {
  readonly dir: string;
  readonly metainfo: Metainfo;
  /** fdatasync before each checkpoint and fsync the directory on rename. Default true. */
  readonly fsync?: boolean;
  /** How often a changed bitfield is made durable. Default 1000 ms. */
  readonly checkpointIntervalMs?: number;
  /** On open, `trust` the sidecar (default) or rehash every present piece (`full`). */
  readonly verify?: 'trust' | 'full';
  /**
   * `always` (default): `finalize` reads the blob back and checks its digest.
   * `when-resumed`: only when some piece was not hashed by this store (see above).
   */
  readonly wholeDigest?: 'always' | 'when-resumed';
  /** Bytes a piece writer queues before `write` asks the caller to wait. Default 1 MiB. */
  readonly writeHighWaterMark?: number;
};

/** Why a piece cannot be written now. */
export type PieceRefusal = 'present' | 'busy' | 'out-of-range' | 'closed';

export type FinalizeOutcome =
  | { readonly kind: 'complete'; readonly path: string }
  | { readonly kind: 'incomplete'; readonly missing: number }
  /** The whole digest did not match; these pieces failed their hash and are missing again. */
  | { readonly kind: 'corrupt'; readonly badPieces: readonly number[] };

export type PieceStoreStats = {
  /** Pieces verified and stored. */
  stored: number;
  /** Pieces refused for a wrong hash or length, and their bytes. */
  rejected: number;
  rejectedBytes: number;
  /** Writes refused because the piece was present or already being written. */
  duplicates: number;
  ioErrors: number;
  /** Present pieces found bad on reopen (`verify: 'full'`) or by `finalize`. */
  corrupt: number;
};

type State = 'partial' | 'verifying' | 'complete' | 'closed';

/**
 * The pieces of one blob on disk: written in place as they arrive, each verified against its
 * SHA-256 before it counts as present (and may be announced or served), persisted for
 * resuming, and on completion checked as a whole and renamed to its content-addressed name.
 * Create with {@link openPieceStore}.
 */
export class PieceStore {
  readonly metainfo: Metainfo;
  readonly pieceCount: number;
  readonly stats: PieceStoreStats = {
    stored: 0,
    rejected: 0,
    rejectedBytes: 0,
    duplicates: 0,
    ioErrors: 0,
    corrupt: 0,
  };
  private readonly paths: BlobPaths;
  private readonly options: Required<
    Pick<PieceStoreOptions, 'fsync' | 'checkpointIntervalMs' | 'writeHighWaterMark' | 'wholeDigest'>
  >;
  private readonly file: FileHandle;
  private sidecar: FileHandle | undefined;
  private readonly present: Bitfield;
  private readonly writers = new Map<number, PieceWriter>();
  private state: State;
  /** Pieces present that this store hashed as they were written (not from a sidecar). */
  private readonly hashedHere: Bitfield;
  private dirty = false;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointChain: Promise<void> = Promise.resolve();
  private finalizing: Promise<FinalizeOutcome> | undefined;

  /** @internal Use {@link openPieceStore}. */
  constructor(init: {
    metainfo: Metainfo;
    paths: BlobPaths;
    options: PieceStore['options'];
    file: FileHandle;
    sidecar: FileHandle | undefined;
    present: Bitfield;
    complete: boolean;
  }) {
    this.metainfo = init.metainfo;
    this.pieceCount = init.present.length;
    this.paths = init.paths;
    this.options = init.options;
    this.file = init.file;
    this.sidecar = init.sidecar;
    this.present = init.present;
    this.hashedHere = new Bitfield(init.present.length);
    this.state = init.complete ? 'complete' : 'partial';
  }

  /** Whether the blob is complete: verified as a whole and under its final name. */
  get complete(): boolean {
    return this.state === 'complete';
  }

  /** Whether every piece is present (then call {@link finalize}). */
  get allPresent(): boolean {
    return this.present.complete;
  }

  /** Pieces present. */
  get count(): number {
    return this.present.count;
  }

  /** Where the blob is (the .part until complete). */
  get path(): string {
    return this.state === 'complete' ? this.paths.final : this.paths.part;
  }

  has(index: number): boolean {
    return this.present.has(index);
  }

  /** A copy of the present pieces, e.g. for a handshake. */
  bitfield(): Bitfield {
    return this.present.clone();
  }

  /** The present pieces themselves (read at once; never kept or changed). */
  bitfieldView(): Bitfield {
    return this.present;
  }

  /** Whether a piece is being written. */
  writing(index: number): boolean {
    return this.writers.has(index);
  }

  pieceSize(index: number): number {
    const { start, end } = pieceBounds(this.metainfo, index);
    return end - start;
  }

  /**
   * Starts writing a piece; its bytes must then be given in order from the piece's start.
   * One writer per piece at a time; present pieces are refused.
   */
  beginPiece(index: number): Result<PieceWriter, PieceRefusal> {
    if (this.state !== 'partial') return fail(this.state === 'closed' ? 'closed' : 'present');
    if (!Number.isInteger(index) || index < 0 || index >= this.pieceCount) {
      return fail('out-of-range');
    }
    if (this.present.has(index)) {
      this.stats.duplicates += 1;
      return fail('present');
    }
    if (this.writers.has(index)) {
      this.stats.duplicates += 1;
      return fail('busy');
    }
    const { start } = pieceBounds(this.metainfo, index);
    const writer = new PieceWriter(this, this.file, index, start, this.pieceSize(index), {
      highWaterMark: this.options.writeHighWaterMark,
      expected: this.metainfo.pieceHashes[index] as string,
    });
    this.writers.set(index, writer);
    return ok(writer);
  }

  /** Writes a whole piece from a buffer or a stream of chunks (with back-pressure). */
  async writePiece(
    index: number,
    data: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  ): Promise<PieceOutcome | { readonly kind: 'refused'; readonly reason: PieceRefusal }> {
    const begun = this.beginPiece(index);
    if (!begun.ok) return { kind: 'refused', reason: begun.error };
    const writer = begun.value;
    try {
      const chunks = data instanceof Uint8Array ? [data] : data;
      for await (const chunk of chunks) {
        if (!writer.write(chunk)) await writer.drained();
      }
    } catch (error) {
      writer.abort();
      await writer.end();
      throw error;
    }
    return writer.end();
  }

  /** A stream of a present piece's bytes `[begin, begin + length)`, or undefined. */
  createReadStream(index: number, begin = 0, length?: number): Readable | undefined {
    const range = this.readable(index, begin, length);
    if (range === undefined) return undefined;
    return readRange(this.file, range.start, range.length);
  }

  /** A present piece's bytes `[begin, begin + length)`, or undefined. */
  async read(index: number, begin = 0, length?: number): Promise<Buffer | undefined> {
    const range = this.readable(index, begin, length);
    if (range === undefined) return undefined;
    return readFully(this.file, range.start, range.length);
  }

  /** Reads a present piece's bytes from `begin` into `targets` (see `PieceSource.readv`). */
  async readv(index: number, begin: number, targets: readonly Buffer[]): Promise<boolean> {
    const length = targets.reduce((n, t) => n + t.length, 0);
    const range = length === 0 ? undefined : this.readable(index, begin, length);
    if (range === undefined) return false;
    return readvAll(this.file, targets, range.start);
  }

  /**
   * Once every piece is present: makes the pieces durable, checks the whole blob's digest
   * and renames the file to its final name (the blob is then complete). On a digest mismatch
   * every piece is rehashed, the bad ones are cleared and reported.
   */
  finalize(): Promise<FinalizeOutcome> {
    if (this.state === 'complete') {
      return Promise.resolve({ kind: 'complete', path: this.paths.final });
    }
    if (this.state === 'closed') return Promise.reject(closedError());
    if (!this.present.complete) {
      return Promise.resolve({
        kind: 'incomplete',
        missing: this.pieceCount - this.present.count,
      });
    }
    this.finalizing ??= this.runFinalize().finally(() => (this.finalizing = undefined));
    return this.finalizing;
  }

  /** Makes the present pieces durable now (see the durability note above). */
  checkpoint(): Promise<void> {
    const run = this.checkpointChain.then(() => this.writeCheckpoint());
    this.checkpointChain = run.catch(() => undefined);
    return run;
  }

  /** Aborts unfinished writers, checkpoints, closes the files. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    await this.finalizing?.catch(() => undefined);
    const writers = [...this.writers.values()];
    for (const writer of writers) writer.abort();
    await Promise.all(writers.map((writer) => writer.end()));
    clearTimeout(this.checkpointTimer);
    if (this.state === 'partial') await this.checkpoint().catch(() => undefined);
    this.state = 'closed';
    await this.sidecar?.close();
    await this.file.close();
  }

  /** @internal Called by a writer whose piece verified. */
  markPresent(index: number): void {
    this.present.set(index);
    this.hashedHere.set(index);
    this.stats.stored += 1;
    this.dirty = true;
    if (this.checkpointTimer === undefined && this.state === 'partial') {
      this.checkpointTimer = setTimeout(() => {
        this.checkpointTimer = undefined;
        this.checkpoint().catch(() => {
          this.stats.ioErrors += 1;
        });
      }, this.options.checkpointIntervalMs);
      this.checkpointTimer.unref();
    }
  }

  /** @internal Called by a writer once its last disk write has settled. */
  release(writer: PieceWriter): void {
    if (this.writers.get(writer.index) === writer) this.writers.delete(writer.index);
  }

  private readable(
    index: number,
    begin: number,
    length: number | undefined,
  ): { start: number; length: number } | undefined {
    if (this.state === 'closed' || !this.present.has(index)) return undefined;
    return pieceRange(this.metainfo, index, begin, length);
  }

  private async writeCheckpoint(): Promise<void> {
    if (!this.dirty || this.sidecar === undefined) return;
    this.dirty = false;
    const snapshot = this.present.toBuffer();
    try {
      if (this.options.fsync) await this.file.datasync();
      await this.sidecar.write(snapshot, 0, snapshot.length, sidecarHeaderLength);
    } catch (error) {
      this.dirty = true;
      throw error;
    }
  }

  private async runFinalize(): Promise<FinalizeOutcome> {
    this.state = 'verifying';
    clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    try {
      if (this.options.fsync) await this.file.datasync();
      const derived = this.options.wholeDigest === 'when-resumed' && this.hashedHere.complete;
      if (!derived && !(await digestMatches(this.file, this.metainfo))) {
        const good = await scanPieces(this.file, this.metainfo, this.present.indices());
        const badPieces: number[] = [];
        for (let index = 0; index < this.pieceCount; index += 1) {
          if (!good.has(index) && this.present.clear(index)) badPieces.push(index);
          if (!good.has(index)) this.hashedHere.clear(index);
        }
        this.stats.corrupt += badPieces.length;
        this.dirty = true;
        this.state = 'partial';
        await this.checkpoint();
        return { kind: 'corrupt', badPieces };
      }
      await rename(this.paths.part, this.paths.final);
      if (this.options.fsync) await syncDir(this.paths.dir);
      this.state = 'complete';
      await this.sidecar?.close();
      this.sidecar = undefined;
      await removeQuietly(this.paths.sidecar);
      return { kind: 'complete', path: this.paths.final };
    } catch (error) {
      if (this.state === 'verifying') this.state = 'partial';
      this.stats.ioErrors += 1;
      throw storageError(`cannot finalize ${this.metainfo.digest}`, error);
    }
  }
}

type BlobPaths = {
  readonly dir: string;
  readonly part: string;
  readonly sidecar: string;
  readonly final: string;
};

/**
 * Opens (creating or resuming) the piece store of one blob in `dir`. A complete blob opens
 * complete; a `.part` resumes with the pieces its sidecar names. Throws `PARAMETER_INVALID`
 * for a bad metainfo and `STORAGE_UNAVAILABLE` when the files cannot be used.
 */
export const openPieceStore = async (options: PieceStoreOptions): Promise<PieceStore> => {
  const checked = validateMetainfo(options.metainfo);
  if (!checked.ok) throw checked.error;
  const metainfo = checked.value;
  const settings = {
    fsync: options.fsync ?? true,
    checkpointIntervalMs: options.checkpointIntervalMs ?? 1000,
    writeHighWaterMark: options.writeHighWaterMark ?? 1024 * 1024,
    wholeDigest: options.wholeDigest ?? 'always',
  };
  const base = join(options.dir, blobFileName(metainfo.digest));
  const paths: BlobPaths = {
    dir: options.dir,
    part: `${base}.part`,
    sidecar: `${base}.bitfield`,
    final: base,
  };
  const pieceCount = pieceCountOf(metainfo.length, metainfo.pieceLength);
  try {
    await mkdir(options.dir, { recursive: true });
    let rescanAll = false;
    const finalStat = await stat(paths.final).catch(() => undefined);
    if (finalStat !== undefined) {
      const file = await open(paths.final, 'r');
      const usable =
        finalStat.isFile() &&
        finalStat.size === metainfo.length &&
        (options.verify !== 'full' || (await digestMatches(file, metainfo)));
      if (usable) {
        await removeQuietly(paths.part);
        await removeQuietly(paths.sidecar);
        return new PieceStore({
          metainfo,
          paths,
          options: settings,
          file,
          sidecar: undefined,
          present: Bitfield.full(pieceCount),
          complete: true,
        });
      }
      // Not the blob after all: take it back as a partial download and keep what verifies.
      await file.close();
      await rename(paths.final, paths.part);
      rescanAll = true;
    }
    const file = await openForUpdate(paths.part);
    if ((await file.stat()).size !== metainfo.length) await file.truncate(metainfo.length);
    const swarm = Buffer.from(infoHash(metainfo), 'hex');
    const saved = rescanAll ? undefined : await readSidecar(paths.sidecar, swarm, pieceCount);
    let present = saved ?? new Bitfield(pieceCount);
    let corrupt = 0;
    if (rescanAll) {
      present = await scanPieces(file, metainfo, range(pieceCount));
    } else if (options.verify === 'full' && present.count > 0) {
      const good = await scanPieces(file, metainfo, present.indices());
      corrupt = present.count - good.count;
      present = good;
    }
    if (saved === undefined || corrupt > 0 || rescanAll) {
      await writeSidecar(paths, swarm, present, settings.fsync);
    }
    const sidecar = await open(paths.sidecar, 'r+');
    const store = new PieceStore({
      metainfo,
      paths,
      options: settings,
      file,
      sidecar,
      present,
      complete: false,
    });
    store.stats.corrupt = corrupt;
    return store;
  } catch (error) {
    throw storageError(`cannot open the piece store of ${metainfo.digest}`, error);
  }
};

const openForUpdate = async (path: string): Promise<FileHandle> => {
  try {
    return await open(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return open(path, 'w+');
  }
};

/** Hashes the given pieces from the file; returns the ones that match. */
const scanPieces = async (
  file: FileHandle,
  metainfo: Metainfo,
  indices: Iterable<number>,
): Promise<Bitfield> => {
  const good = new Bitfield(metainfo.pieceHashes.length);
  const buffer = Buffer.allocUnsafe(Math.min(readChunk, Math.max(1, metainfo.pieceLength)));
  for (const index of [...indices]) {
    const { start, end } = pieceBounds(metainfo, index);
    const hash = createHash('sha256');
    if (!(await hashRange(file, buffer, start, end, hash))) continue;
    if (hash.digest('hex') === metainfo.pieceHashes[index]) good.set(index);
  }
  return good;
};

const digestMatches = async (file: FileHandle, metainfo: Metainfo): Promise<boolean> => {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(readChunk);
  if (!(await hashRange(file, buffer, 0, metainfo.length, hash))) return false;
  return `sha256:${hash.digest('hex')}` === metainfo.digest;
};

/** Feeds `[start, end)` of the file to the hash; false if the file is shorter. */
const hashRange = async (
  file: FileHandle,
  buffer: Buffer,
  start: number,
  end: number,
  hash: ReturnType<typeof createHash>,
): Promise<boolean> => {
  for (let at = start; at < end;) {
    const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - at), at);
    if (bytesRead === 0) return false;
    hash.update(buffer.subarray(0, bytesRead));
    at += bytesRead;
  }
  return true;
};

const removeQuietly = async (path: string): Promise<void> => {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
};

function* range(n: number): Generator<number> {
  for (let i = 0; i < n; i += 1) yield i;
}

const closedError = () => new ShoalError('STORAGE_UNAVAILABLE', 'the piece store is closed');

const storageError = (message: string, cause: unknown): ShoalError =>
  cause instanceof ShoalError
    ? cause
    : new ShoalError('STORAGE_UNAVAILABLE', `${message}: ${(cause as Error).message}`, { cause });
