import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describeBlobStoreContract } from '../../../test/contracts/blobStoreContract';
import { createFilesystemBlobStore } from './filesystemBlobStore';

const tempRoot = () => mkdtempSync(join(tmpdir(), 'shoal-fsstore-'));

describeBlobStoreContract('filesystem', async () => {
  const root = tempRoot();
  return {
    store: createFilesystemBlobStore({ root }),
    cleanup: async () => rmSync(root, { recursive: true, force: true }),
  };
});

describe('filesystem BlobStore specifics', () => {
  let root: string;
  beforeEach(() => {
    root = tempRoot();
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('leaves no temporary file behind after a failed put', async () => {
    const store = createFilesystemBlobStore({ root });
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(1000);
        throw new Error('boom');
      })(),
    );
    await expect(store.put('x/y', body)).rejects.toThrow('boom');
    expect(readdirSync(join(root, '.tmp'))).toEqual([]);
  });

  it('never lists a partial write left by a crash', async () => {
    const store = createFilesystemBlobStore({ root, name: 'cold' });
    await store.put('blobs/a', Readable.from([Buffer.from('a')]));
    mkdirSync(join(root, '.tmp'), { recursive: true });
    writeFileSync(join(root, '.tmp', 'deadbeef'), 'half');
    const names: string[] = [];
    for await (const name of store.list()) names.push(name);
    expect(names).toEqual(['blobs/a']);
    expect(store.name).toBe('cold');
  });

  it('keeps objects inside its root', async () => {
    const store = createFilesystemBlobStore({ root: join(root, 'inner') });
    await expect(store.put('../outside', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({
      code: 'PARAMETER_INVALID',
    });
    expect(readdirSync(root)).toEqual([]);
  });
});
