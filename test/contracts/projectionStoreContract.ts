import { randomBytes } from 'node:crypto';
import type { DocChange, DocKey, ProjectionStore } from '../../domain';
import { docKeyString, isShoalError } from '../../domain';

/** A fresh store for one test, and how to reach its data again. */
export type StoreUnderTest = {
  readonly store: ProjectionStore;
  /** Opens another handle on the same data, as another process would; see `persistent`. */
  readonly reopen?: () => Promise<ProjectionStore>;
  /** Removes what the store left behind, after the suite closed every handle. */
  readonly dispose?: () => Promise<void>;
};

/**
 * What an adapter can do beyond the common contract, declared by the adapter's spec; the
 * suite never asks which adapter it runs.
 */
export type ProjectionStoreContractOptions = {
  /** The data outlives its handles: `reopen` gives a second handle on it (required then). */
  readonly persistent?: boolean;
};

/**
 * The digest of the documents in `goldenChanges`, format 1 (checked independently with
 * Python's hashlib and `json.dumps(sort_keys=True)`). Every adapter must produce it, so a live
 * store and a scratch store of another kind can be compared (`replay --verify`).
 */
export const goldenDigest =
  'sha256:91bdd728507211e793f320f2927c38e02a45eb4f5a3966f312658f8a660e68bb';

const goldenChanges: DocChange[] = [
  { key: { partition: 'library/alpine', id: 'latest' }, doc: { digest: 'sha256:aa', n: 1 } },
  {
    key: { partition: 'library/alpine', id: '3.20' },
    doc: { n: 2, nested: { b: [1, 'x'], a: null } },
  },
  { key: { partition: 'é', id: '😀' }, doc: 'a string' },
  { key: { partition: 'blobs', id: 'sha256:01' }, doc: [3, 2, 1] },
];

const fresh = (prefix = 'p') => `${prefix}-${randomBytes(4).toString('hex')}`;
const key = (partition: string, id: string): DocKey => ({ partition, id });
const put = (partition: string, id: string, doc: unknown): DocChange => ({
  key: key(partition, id),
  doc,
});

const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a result');
};

const expectCode = async (promise: Promise<unknown>, code: string) => {
  const error = await rejection(promise);
  expect(isShoalError(error)).toBe(true);
  expect(error).toMatchObject({ code });
};

/**
 * Registers the ProjectionStore contract (`domain/projection/projection.ts`) for one adapter:
 * checkpoints and compare-and-swap commits, reads and ordered listings, deletes, reset, and
 * a digest that depends on the documents only.
 */
export const describeProjectionStoreContract = (
  name: string,
  factory: () => Promise<StoreUnderTest>,
  options: ProjectionStoreContractOptions = {},
): void => {
  describe(`ProjectionStore contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: ProjectionStore;
    const opened: ProjectionStore[] = [];

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
      opened.push(store);
    });

    afterEach(async () => {
      for (const handle of opened.splice(0)) await handle.close();
      await subject.dispose?.();
    });

    /** Commits `changes` on top of whatever the projection holds now. */
    const apply = async (
      projection: string,
      changes: DocChange[],
      target: ProjectionStore = store,
    ) => {
      const from = await target.checkpoint(projection);
      const ok = await target.commit(projection, { from, to: from + 1, version: 1, changes });
      expect(ok).toBe(true);
    };

    describe('checkpoints and commit', () => {
      it('starts a new projection at checkpoint 0 with no stored version', async () => {
        const projection = fresh();
        expect(await store.checkpoint(projection)).toBe(0);
        expect(await store.storedVersion(projection)).toBeUndefined();
      });

      it('moves the checkpoint and the version together with the changes', async () => {
        const projection = fresh();
        const ok = await store.commit(projection, {
          from: 0,
          to: 7,
          version: 3,
          changes: [put('r', 'a', { n: 1 })],
        });
        expect(ok).toBe(true);
        expect(await store.checkpoint(projection)).toBe(7);
        expect(await store.storedVersion(projection)).toBe(3);
        expect(await store.get(projection, key('r', 'a'))).toEqual({ n: 1 });
      });

      it('advances the checkpoint with no changes', async () => {
        const projection = fresh();
        expect(await store.commit(projection, { from: 0, to: 5, version: 1, changes: [] })).toBe(
          true,
        );
        expect(await store.checkpoint(projection)).toBe(5);
        expect(await store.storedVersion(projection)).toBe(1);
      });

      it('refuses a stale `from` and writes nothing (compare-and-swap)', async () => {
        const projection = fresh();
        await store.commit(projection, { from: 0, to: 4, version: 1, changes: [put('r', 'a', 1)] });
        const digest = await store.digest(projection);

        for (const from of [0, 3, 5]) {
          const ok = await store.commit(projection, {
            from,
            to: 9,
            version: 2,
            changes: [put('r', 'a', 2), put('r', 'b', 3), { key: key('r', 'a'), doc: undefined }],
          });
          expect(ok).toBe(false);
        }
        expect(await store.checkpoint(projection)).toBe(4);
        expect(await store.storedVersion(projection)).toBe(1);
        expect(await store.get(projection, key('r', 'a'))).toBe(1);
        expect(await store.get(projection, key('r', 'b'))).toBeUndefined();
        expect(await store.digest(projection)).toBe(digest);
      });

      it('lets exactly one of two racing commits from the same checkpoint win', async () => {
        const projection = fresh();
        const results = await Promise.all(
          [1, 2].map((n) =>
            store.commit(projection, {
              from: 0,
              to: 10,
              version: 1,
              changes: [put('r', 'winner', n)],
            }),
          ),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true) + 1;
        expect(await store.get(projection, key('r', 'winner'))).toBe(winner);
      });

      it('rejects a commit that would move the checkpoint backwards', async () => {
        const projection = fresh();
        await expectCode(
          store.commit(projection, { from: 5, to: 4, version: 1, changes: [] }),
          'POSITION_INVALID',
        );
        expect(await store.checkpoint(projection)).toBe(0);
      });

      it('keeps projections apart: checkpoints, documents and partitions', async () => {
        const one = fresh();
        const two = fresh();
        await store.commit(one, { from: 0, to: 3, version: 1, changes: [put('r', 'a', 'one')] });
        expect(await store.checkpoint(two)).toBe(0);
        expect(await store.get(two, key('r', 'a'))).toBeUndefined();
        expect(await store.partitions(two)).toEqual([]);
        await store.commit(two, { from: 0, to: 8, version: 2, changes: [put('r', 'a', 'two')] });
        expect(await store.get(one, key('r', 'a'))).toBe('one');
        expect(await store.get(two, key('r', 'a'))).toBe('two');
        expect(await store.checkpoint(one)).toBe(3);
      });
    });

    describe('documents', () => {
      it('reads back JSON documents of every shape', async () => {
        const projection = fresh();
        const docs = {
          object: { digest: 'sha256:ab', position: 12, nested: { list: [1, 'two', null] } },
          text: 'ünïcødé 😀',
          number: 42.5,
          list: [{ a: 1 }, { b: [] }],
          flag: false,
          nothing: null,
        };
        await apply(
          projection,
          Object.entries(docs).map(([id, doc]) => put('r', id, doc)),
        );
        for (const [id, doc] of Object.entries(docs)) {
          expect(await store.get(projection, key('r', id))).toEqual(doc);
        }
      });

      it('getMany finds present keys by docKeyString and leaves missing ones out', async () => {
        const projection = fresh();
        await apply(projection, [put('r1', 'a', 1), put('r2', 'a', 2), put('r1', 'b', 3)]);
        const keys = [key('r1', 'a'), key('r2', 'a'), key('r1', 'missing'), key('r3', 'a')];
        const found = await store.getMany(projection, [...keys, key('r1', 'a')]);
        expect(found).toEqual(
          new Map<string, unknown>([
            [docKeyString(key('r1', 'a')), 1],
            [docKeyString(key('r2', 'a')), 2],
          ]),
        );
        expect(await store.getMany(projection, [])).toEqual(new Map());
      });

      it('hands out copies: changing what was read changes nothing stored', async () => {
        const projection = fresh();
        const doc = { list: [1, 2], inner: { n: 1 } };
        await apply(projection, [put('r', 'a', doc)]);
        doc.list.push(3);
        const read = await store.get<typeof doc>(projection, key('r', 'a'));
        (read as typeof doc).inner.n = 99;
        const many = await store.getMany(projection, [key('r', 'a')]);
        (many.get(docKeyString(key('r', 'a'))) as typeof doc).list.push(4);
        expect(await store.get(projection, key('r', 'a'))).toEqual({
          list: [1, 2],
          inner: { n: 1 },
        });
      });

      it('replaces a document, and deletes it when the change has no doc', async () => {
        const projection = fresh();
        await apply(projection, [put('r', 'a', { v: 1 }), put('r', 'b', { v: 1 })]);
        await apply(projection, [put('r', 'a', { v: 2 }), { key: key('r', 'b'), doc: undefined }]);
        expect(await store.get(projection, key('r', 'a'))).toEqual({ v: 2 });
        expect(await store.get(projection, key('r', 'b'))).toBeUndefined();
        expect((await store.list(projection, 'r')).map((row) => row.id)).toEqual(['a']);
        // Deleting what does not exist is fine.
        await apply(projection, [{ key: key('r', 'never'), doc: undefined }]);
      });

      it('applies the changes of one commit in order: the last change of a key wins', async () => {
        const projection = fresh();
        await apply(projection, [
          put('r', 'a', 1),
          put('r', 'a', 2),
          put('r', 'b', 1),
          { key: key('r', 'b'), doc: undefined },
          { key: key('r', 'c'), doc: undefined },
          put('r', 'c', 3),
        ]);
        expect(await store.get(projection, key('r', 'a'))).toBe(2);
        expect(await store.get(projection, key('r', 'b'))).toBeUndefined();
        expect(await store.get(projection, key('r', 'c'))).toBe(3);
      });

      it('drops a partition from `partitions` when its last document goes', async () => {
        const projection = fresh();
        await apply(projection, [put('a', '1', 1), put('b', '1', 1)]);
        await apply(projection, [{ key: key('a', '1'), doc: undefined }]);
        expect(await store.partitions(projection)).toEqual(['b']);
      });
    });

    describe('listings', () => {
      // Code-point order, as SQLite's BINARY collation orders UTF-8: digits < upper < lower
      // < U+00E9 < U+FFFD < U+1F600. (UTF-16 order would put the emoji before U+FFFD.)
      const ordered = ['1', '10', '9', 'A', 'B', 'a', 'a.b', 'a0', 'b', 'é', '\ufffd', '😀'];

      const seed = async (projection: string, partition: string) => {
        const shuffled = [...ordered].sort(() => Math.random() - 0.5);
        await apply(
          projection,
          shuffled.map((id) => put(partition, id, { id })),
        );
      };

      it('lists a partition in id order by code point', async () => {
        const projection = fresh();
        await seed(projection, 'r');
        await apply(projection, [put('other', 'x', 1)]);
        const rows = await store.list<{ id: string }>(projection, 'r');
        expect(rows.map((row) => row.id)).toEqual(ordered);
        expect(rows.every((row) => row.doc.id === row.id)).toBe(true);
      });

      it('pages with `after` and `limit`', async () => {
        const projection = fresh();
        await seed(projection, 'r');
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const rows = await store.list(projection, 'r', {
            ...(after !== undefined && { after }),
            limit: 5,
          });
          seen.push(...rows.map((row) => row.id));
          if (rows.length < 5) break;
          after = rows[rows.length - 1]?.id;
        }
        expect(seen).toEqual(ordered);
        expect((await store.list(projection, 'r', { after: 'a' })).map((r) => r.id)).toEqual(
          ordered.slice(ordered.indexOf('a') + 1),
        );
        // `after` need not be an id that exists.
        expect((await store.list(projection, 'r', { after: 'a1', limit: 1 }))[0]?.id).toBe('b');
        expect(await store.list(projection, 'r', { after: '😀' })).toEqual([]);
        expect(await store.list(projection, 'r', { limit: 0 })).toEqual([]);
      });

      it('lists in reverse: `after` then means before, in the direction of travel', async () => {
        const projection = fresh();
        await seed(projection, 'r');
        const reversed = [...ordered].reverse();
        const ids = async (o: { after?: string; limit?: number }) =>
          (await store.list(projection, 'r', { ...o, reverse: true })).map((row) => row.id);
        expect(await ids({})).toEqual(reversed);
        expect(await ids({ limit: 3 })).toEqual(reversed.slice(0, 3));
        expect(await ids({ after: 'b', limit: 3 })).toEqual(['a0', 'a.b', 'a']);
        expect(await ids({ after: '1' })).toEqual([]);
      });

      it('lists nothing for an unknown partition or projection', async () => {
        const projection = fresh();
        await seed(projection, 'r');
        expect(await store.list(projection, 'nope')).toEqual([]);
        expect(await store.list(fresh(), 'r')).toEqual([]);
      });

      it('lists partitions in code-point order, with `after` and `limit`', async () => {
        const projection = fresh();
        await apply(
          projection,
          ordered.flatMap((partition) => [put(partition, 'x', 1), put(partition, 'y', 2)]),
        );
        expect(await store.partitions(projection)).toEqual(ordered);
        expect(await store.partitions(projection, { limit: 4 })).toEqual(ordered.slice(0, 4));
        expect(await store.partitions(projection, { after: 'B', limit: 2 })).toEqual(['a', 'a.b']);
        expect(await store.partitions(projection, { after: 'a1' })).toEqual([
          'b',
          'é',
          '\ufffd',
          '😀',
        ]);
        expect(await store.partitions(projection, { after: '😀' })).toEqual([]);
        expect(await store.partitions(projection, { limit: 0 })).toEqual([]);
      });
    });

    describe('reset', () => {
      it('drops documents, checkpoint and version of one projection only', async () => {
        const projection = fresh();
        const other = fresh();
        await store.commit(projection, { from: 0, to: 5, version: 2, changes: [put('r', 'a', 1)] });
        await store.commit(other, { from: 0, to: 6, version: 1, changes: [put('r', 'a', 1)] });
        const empty = await store.digest(fresh());

        await store.reset(projection);
        expect(await store.checkpoint(projection)).toBe(0);
        expect(await store.storedVersion(projection)).toBeUndefined();
        expect(await store.get(projection, key('r', 'a'))).toBeUndefined();
        expect(await store.partitions(projection)).toEqual([]);
        expect(await store.digest(projection)).toBe(empty);
        expect(await store.checkpoint(other)).toBe(6);
        expect(await store.get(other, key('r', 'a'))).toBe(1);
        // A reset projection starts over from 0.
        expect(await store.commit(projection, { from: 0, to: 1, version: 3, changes: [] })).toBe(
          true,
        );
      });
    });

    describe('digest', () => {
      it('is the golden digest for the golden documents (the same in every adapter)', async () => {
        const projection = fresh();
        await apply(projection, goldenChanges);
        expect(await store.digest(projection)).toBe(goldenDigest);
      });

      it('is equal for equal documents, however and wherever they were written', async () => {
        const one = fresh();
        const two = fresh();
        // One: in one commit. Two: in another order, over several commits, with detours,
        // and with object keys in another order.
        await apply(one, [put('r', 'a', { x: 1, y: [1, 2] }), put('r', 'b', 2), put('s', 'a', 3)]);
        await apply(two, [put('s', 'a', 3), put('r', 'b', 'tmp'), put('gone', 'x', 1)]);
        await apply(two, [put('r', 'b', 2), { key: key('gone', 'x'), doc: undefined }]);
        await apply(two, [put('r', 'a', { y: [1, 2], x: 1 })]);
        expect(await store.digest(one)).toBe(await store.digest(two));
      });

      it('differs when any document, id or partition differs', async () => {
        const base = [put('r', 'a', { x: 1 }), put('r', 'b', 2)];
        const variants: DocChange[][] = [
          [put('r', 'a', { x: 2 }), put('r', 'b', 2)],
          [put('r', 'a', { x: 1 }), put('r', 'c', 2)],
          [put('r', 'a', { x: 1 }), put('s', 'b', 2)],
          [put('r', 'a', { x: 1 }), put('r', 'b', '2')],
          [put('r', 'a', { x: 1 })],
          [...base, put('r', 'c', null)],
          // Framing: moving characters between partition and id must change the digest.
          [put('r', 'a', { x: 1 }), put('rb', '', 2)],
        ];
        const projection = fresh();
        await apply(projection, base);
        const digests = new Set([await store.digest(projection)]);
        for (const changes of variants) {
          const other = fresh();
          await apply(other, changes);
          digests.add(await store.digest(other));
        }
        expect(digests.size).toBe(variants.length + 1);
      });

      it('is the same for every empty projection', async () => {
        const projection = fresh();
        await apply(projection, [put('r', 'a', 1)]);
        await apply(projection, [{ key: key('r', 'a'), doc: undefined }]);
        expect(await store.digest(projection)).toBe(await store.digest(fresh()));
      });
    });

    describe('lifecycle', () => {
      it('fails with a ShoalError once closed', async () => {
        const projection = fresh();
        await store.close();
        await expectCode(store.checkpoint(projection), 'INTERNAL');
        await expectCode(
          store.commit(projection, { from: 0, to: 1, version: 1, changes: [] }),
          'INTERNAL',
        );
        await store.close();
      });

      if (options.persistent === true) {
        it('keeps documents, checkpoint and version across handles', async () => {
          if (subject.reopen === undefined) throw new Error('persistent needs reopen');
          const projection = fresh();
          await store.commit(projection, {
            from: 0,
            to: 12,
            version: 4,
            changes: [put('r', 'a', { v: 1 })],
          });
          const digest = await store.digest(projection);
          await store.close();
          const again = await subject.reopen();
          opened.push(again);
          expect(await again.checkpoint(projection)).toBe(12);
          expect(await again.storedVersion(projection)).toBe(4);
          expect(await again.get(projection, key('r', 'a'))).toEqual({ v: 1 });
          expect(await again.digest(projection)).toBe(digest);
        });

        it('compares and swaps across handles: one of two writers wins', async () => {
          if (subject.reopen === undefined) throw new Error('persistent needs reopen');
          const projection = fresh();
          const other = await subject.reopen();
          opened.push(other);
          const batch = (n: number) => ({
            from: 0,
            to: 3,
            version: 1,
            changes: [put('r', 'a', n)],
          });
          expect(await store.commit(projection, batch(1))).toBe(true);
          expect(await other.commit(projection, batch(2))).toBe(false);
          expect(await other.get(projection, key('r', 'a'))).toBe(1);
          await apply(projection, [put('r', 'a', 3)], other);
          expect(await store.get(projection, key('r', 'a'))).toBe(3);
          expect(await store.checkpoint(projection)).toBe(4);
        });
      }
    });
  });
};
