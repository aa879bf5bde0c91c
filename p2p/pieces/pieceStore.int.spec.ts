import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Metainfo } from '../metainfo';
import { MetainfoBuilder, pieceBounds } from '../metainfo';
import type { PieceStoreOptions } from './pieceStore';
import { blobFileName, openPieceStore } from './pieceStore';

type Blob = { data: Buffer; metainfo: Metainfo };

const blobOf = (length: number, pieceLength: number): Blob => {
  const data = randomBytes(length);
  return { data, metainfo: new MetainfoBuilder(pieceLength).update(data).digest() };
};

const pieceOf = (blob: Blob, index: number): Buffer => {
  const { start, end } = pieceBounds(blob.metainfo, index);
  return blob.data.subarray(start, end);
};

// 10 pieces: nine of 100 000 bytes and a last one of 50 000.
const blob = blobOf(950_000, 100_000);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-pieces-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open_ = (options: Partial<PieceStoreOptions> = {}) =>
  openPieceStore({ dir, metainfo: blob.metainfo, fsync: false, ...options });

const base = () => join(dir, blobFileName(blob.metainfo.digest));

describe('PieceStore', () => {
  it('writes pieces in place in any order, verifies the blob and renames it', async () => {
    const store = await open_({ fsync: true });
    expect(await readdir(dir)).toEqual(
      [
        `${blobFileName(blob.metainfo.digest)}.bitfield`,
        `${blobFileName(blob.metainfo.digest)}.part`,
      ].sort(),
    );
    for (const index of [9, 3, 0, 7, 1, 2, 8, 4, 6, 5]) {
      expect(await store.writePiece(index, pieceOf(blob, index))).toEqual({ kind: 'stored' });
      expect(store.has(index)).toBe(true);
    }
    expect(store.allPresent).toBe(true);
    expect(store.complete).toBe(false);
    expect(await store.finalize()).toEqual({ kind: 'complete', path: base() });
    expect(store.complete).toBe(true);
    expect((await readFile(base())).equals(blob.data)).toBe(true);
    expect(await readdir(dir)).toEqual([blobFileName(blob.metainfo.digest)]);
    // Still serves pieces after the rename.
    expect((await store.read(9))?.equals(pieceOf(blob, 9))).toBe(true);
    expect(store.stats).toMatchObject({ stored: 10, rejected: 0 });
    await store.close();
  });

  it('takes a piece chunk by chunk with back-pressure', async () => {
    const store = await open_({ writeHighWaterMark: 8 * 1024 });
    const begun = store.beginPiece(4);
    if (!begun.ok) throw new Error(begun.error);
    const writer = begun.value;
    const piece = pieceOf(blob, 4);
    let waited = 0;
    for (let at = 0; at < piece.length; at += 3000) {
      if (!writer.write(piece.subarray(at, at + 3000))) {
        waited += 1;
        await writer.drained();
      }
    }
    expect(waited).toBeGreaterThan(0);
    expect(await writer.end()).toEqual({ kind: 'stored' });
    expect((await store.read(4))?.equals(piece)).toBe(true);
    await store.close();
  });

  it('copies each chunk before write returns: the caller may reuse its buffer', async () => {
    const store = await open_();
    const begun = store.beginPiece(1);
    if (!begun.ok) throw new Error(begun.error);
    const piece = pieceOf(blob, 1);
    const reused = Buffer.alloc(4096);
    for (let at = 0; at < piece.length; at += reused.length) {
      const n = piece.copy(reused, 0, at, at + reused.length);
      if (!begun.value.write(reused.subarray(0, n))) await begun.value.drained();
      reused.fill(0xa5);
    }
    expect(await begun.value.end()).toEqual({ kind: 'stored' });
    expect((await store.read(1))?.equals(piece)).toBe(true);
    const into = [Buffer.alloc(10), Buffer.alloc(20)];
    expect(await store.readv(1, 5, into)).toBe(true);
    expect(Buffer.concat(into).equals(piece.subarray(5, 35))).toBe(true);
    expect(await store.readv(2, 0, [Buffer.alloc(1)])).toBe(false);
    await store.close();
  });

  it('rejects and counts a bad piece, which is neither present nor readable', async () => {
    const store = await open_();
    const bad = Buffer.from(pieceOf(blob, 2));
    bad[500] = (bad[500] ?? 0) ^ 1;
    expect(await store.writePiece(2, bad)).toEqual({ kind: 'bad-hash' });
    expect(await store.writePiece(3, pieceOf(blob, 3).subarray(1))).toEqual({
      kind: 'bad-length',
      received: 99_999,
    });
    expect(await store.writePiece(3, Buffer.concat([pieceOf(blob, 3), Buffer.alloc(1)]))).toEqual({
      kind: 'bad-length',
      received: 100_001,
    });
    expect(store.has(2) || store.has(3)).toBe(false);
    expect(await store.read(2)).toBeUndefined();
    expect(store.createReadStream(2)).toBeUndefined();
    expect(store.stats).toMatchObject({ rejected: 3, rejectedBytes: 300_000, stored: 0 });
    expect(await store.writePiece(2, pieceOf(blob, 2))).toEqual({ kind: 'stored' });
    await store.close();
  });

  it('refuses a second writer of a piece and a present piece', async () => {
    const store = await open_();
    const first = store.beginPiece(1);
    expect(store.beginPiece(1)).toEqual({ ok: false, error: 'busy' });
    expect(store.beginPiece(10)).toEqual({ ok: false, error: 'out-of-range' });
    if (!first.ok) throw new Error(first.error);
    first.value.write(pieceOf(blob, 1));
    expect(await first.value.end()).toEqual({ kind: 'stored' });
    expect(await store.writePiece(1, pieceOf(blob, 1))).toEqual({
      kind: 'refused',
      reason: 'present',
    });
    expect(store.stats.duplicates).toBe(2);
    const aborted = store.beginPiece(5);
    if (!aborted.ok) throw new Error(aborted.error);
    aborted.value.write(pieceOf(blob, 5).subarray(0, 1000));
    aborted.value.abort();
    expect(await aborted.value.end()).toEqual({ kind: 'aborted' });
    expect(store.writing(5)).toBe(false);
    expect(store.has(5)).toBe(false);
    await store.close();
  });

  it('serves present pieces and ranges as streams', async () => {
    const store = await open_();
    await store.writePiece(9, pieceOf(blob, 9));
    const chunks: Buffer[] = [];
    for await (const chunk of store.createReadStream(9, 1000, 20_000) ?? []) chunks.push(chunk);
    expect(Buffer.concat(chunks).equals(pieceOf(blob, 9).subarray(1000, 21_000))).toBe(true);
    expect(store.createReadStream(9, 49_000, 2000)).toBeUndefined(); // past the piece end
    expect(store.createReadStream(8)).toBeUndefined();
    await store.close();
  });

  it('resumes after a restart with the pieces checkpointed', async () => {
    const first = await open_();
    for (const index of [0, 4, 9]) await first.writePiece(index, pieceOf(blob, index));
    await first.close();
    const second = await open_();
    expect([...second.bitfield().indices()]).toEqual([0, 4, 9]);
    for (const index of [1, 2, 3, 5, 6, 7, 8]) {
      expect(await second.writePiece(index, pieceOf(blob, index))).toEqual({ kind: 'stored' });
    }
    expect((await second.finalize()).kind).toBe('complete');
    await second.close();
    const third = await open_();
    expect(third.complete).toBe(true);
    expect(third.beginPiece(0)).toEqual({ ok: false, error: 'present' });
    expect((await third.read(3))?.equals(pieceOf(blob, 3))).toBe(true);
    await third.close();
  });

  it('persists a piece only at a checkpoint, after the data (as after a crash)', async () => {
    const running = await open_({ checkpointIntervalMs: 60_000, fsync: true });
    await running.writePiece(6, pieceOf(blob, 6));
    // A process killed now leaves a sidecar without piece 6: it is fetched again.
    const crashed = await open_();
    expect(crashed.count).toBe(0);
    await crashed.close();
    await running.checkpoint();
    const restarted = await open_();
    expect([...restarted.bitfield().indices()]).toEqual([6]);
    await restarted.close();
    await running.close();
  });

  it('checkpoints on its own after the interval', async () => {
    const store = await open_({ checkpointIntervalMs: 20 });
    await store.writePiece(2, pieceOf(blob, 2));
    await new Promise((r) => setTimeout(r, 100));
    const other = await open_();
    expect([...other.bitfield().indices()]).toEqual([2]);
    await other.close();
    await store.close();
  });

  it('discards a sidecar made for another metainfo of the same digest', async () => {
    const first = await open_();
    await first.writePiece(0, pieceOf(blob, 0));
    await first.close();
    const otherPieces = new MetainfoBuilder(50_000).update(blob.data).digest();
    const second = await openPieceStore({ dir, metainfo: otherPieces, fsync: false });
    expect(second.count).toBe(0);
    expect(second.pieceCount).toBe(19);
    await second.close();
  });

  it('finds corrupted pieces on a full verify, or at the latest in finalize', async () => {
    const first = await open_();
    for (let index = 0; index < 10; index += 1) await first.writePiece(index, pieceOf(blob, index));
    await first.close();
    // The disk flips a byte in piece 7.
    const at = pieceBounds(blob.metainfo, 7).start + 123;
    const file = await open(`${base()}.part`, 'r+');
    await file.write(Buffer.from([(blob.data[at] ?? 0) ^ 0xff]), 0, 1, at);
    await file.close();

    const verified = await open_({ verify: 'full' });
    expect(verified.has(7)).toBe(false);
    expect(verified.count).toBe(9);
    expect(verified.stats.corrupt).toBe(1);
    await verified.close();

    // A trusting reopen sees what the full verify persisted.
    const trusting = await open_();
    expect(trusting.has(7)).toBe(false); // the full verify persisted its finding
    const rewrite = await trusting.writePiece(7, pieceOf(blob, 7));
    expect(rewrite).toEqual({ kind: 'stored' });
    // Corrupt again behind the store's back: only the whole digest can tell.
    const again = await open(`${base()}.part`, 'r+');
    await again.write(Buffer.from([0]), 0, 1, pieceBounds(blob.metainfo, 2).start);
    await again.close();
    expect(await trusting.finalize()).toEqual({ kind: 'corrupt', badPieces: [2] });
    expect(trusting.has(2)).toBe(false);
    expect(trusting.complete).toBe(false);
    await trusting.writePiece(2, pieceOf(blob, 2));
    expect((await trusting.finalize()).kind).toBe('complete');
    expect((await readFile(base())).equals(blob.data)).toBe(true);
    await trusting.close();
  });

  it('derives the whole digest from the pieces it hashed, and checks a resumed one whole', async () => {
    const flipByteOf = async (index: number) => {
      const file = await open(`${base()}.part`, 'r+');
      const at = pieceBounds(blob.metainfo, index).start;
      await file.write(Buffer.from([(blob.data[at] ?? 0) ^ 0xff]), 0, 1, at);
      await file.close();
    };
    // Every piece hashed on its way in: finalize does not read the blob back (a byte
    // flipped on disk afterwards goes unseen, as it would after any check).
    const fresh = await open_({ wholeDigest: 'when-resumed' });
    for (let index = 0; index < 10; index += 1) await fresh.writePiece(index, pieceOf(blob, index));
    await flipByteOf(4);
    expect((await fresh.finalize()).kind).toBe('complete');
    await fresh.close();
    await rm(base());

    // Resumed: pieces taken from the sidecar were not hashed here, so the blob is checked.
    const first = await open_({ wholeDigest: 'when-resumed' });
    for (let index = 0; index < 5; index += 1) await first.writePiece(index, pieceOf(blob, index));
    await first.close();
    await flipByteOf(3);
    const resumed = await open_({ wholeDigest: 'when-resumed' });
    for (let index = 5; index < 10; index += 1) {
      await resumed.writePiece(index, pieceOf(blob, index));
    }
    expect(await resumed.finalize()).toEqual({ kind: 'corrupt', badPieces: [3] });
    await resumed.writePiece(3, pieceOf(blob, 3));
    expect((await resumed.finalize()).kind).toBe('complete');
    expect((await readFile(base())).equals(blob.data)).toBe(true);
    await resumed.close();
  });

  it('takes a damaged complete blob back as a partial download on a full verify', async () => {
    const data = Buffer.from(blob.data);
    data[950_000 - 1] = (data[950_000 - 1] ?? 0) ^ 1; // last piece
    await writeFile(base(), data);
    const trusted = await open_();
    expect(trusted.complete).toBe(true);
    await trusted.close();
    const store = await open_({ verify: 'full' });
    expect(store.complete).toBe(false);
    expect(store.count).toBe(9);
    expect(store.has(9)).toBe(false);
    await store.writePiece(9, pieceOf(blob, 9));
    expect((await store.finalize()).kind).toBe('complete');
    await store.close();
  });

  it('handles the empty blob', async () => {
    const empty = new MetainfoBuilder(256 * 1024).digest();
    const store = await openPieceStore({ dir, metainfo: empty });
    expect(store.pieceCount).toBe(0);
    expect(store.allPresent).toBe(true);
    expect(await store.finalize()).toEqual({
      kind: 'complete',
      path: join(dir, blobFileName(empty.digest)),
    });
    expect((await readFile(join(dir, blobFileName(empty.digest)))).length).toBe(0);
    await store.close();
  });

  it('reports an incomplete blob and refuses a bad metainfo', async () => {
    const store = await open_();
    expect(await store.finalize()).toEqual({ kind: 'incomplete', missing: 10 });
    await store.close();
    await expect(
      openPieceStore({ dir, metainfo: { ...blob.metainfo, pieceHashes: [] } }),
    ).rejects.toMatchObject({ code: 'PARAMETER_INVALID' });
  });
});
