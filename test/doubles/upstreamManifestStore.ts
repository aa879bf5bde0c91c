import type { BlobStore } from '../../domain';
import { ShoalError } from '../../domain';
import { sha256 } from '../fixtures/blobs';

/** A manifest as an upstream registry serves it. */
export type UpstreamManifest = { readonly bytes: Buffer; readonly mediaType: string };

/** Switches and a record of what was asked, shared with the test. */
export type UpstreamState = { down: boolean; asked: string[] };

/**
 * A read-only backend fronting another registry, as the `registry` backend looks to an
 * origin: per repository (`forRepository`), manifests by tag or digest (`fetchManifest`), a
 * tag's digest (`headManifest`), the same `manifests` for every repository; no blobs. While
 * `state.down`, every request fails with `STORAGE_UNAVAILABLE`; `state.asked` records
 * `<repo>:<reference>` per fetch and `HEAD <repo>:<tag>` per head.
 */
export const upstreamManifestStore = (
  manifests: ReadonlyMap<string, UpstreamManifest>,
  state: UpstreamState = { down: false, asked: [] },
): BlobStore => {
  const refuse = () => Promise.reject(new ShoalError('UNSUPPORTED', 'read-only'));
  const base = {
    name: 'hub',
    readOnly: true,
    stat: async () => undefined,
    get: () => Promise.reject(new ShoalError('BLOB_UNKNOWN', 'no blobs here')),
    put: refuse,
    delete: refuse,
    list: () => ({
      [Symbol.asyncIterator]: () => ({ next: () => refuse() as Promise<IteratorResult<string>> }),
    }),
  };
  return {
    ...base,
    forRepository: (repo: string) => ({
      ...base,
      fetchManifest: async (reference: string) => {
        state.asked.push(`${repo}:${reference}`);
        if (state.down) throw new ShoalError('STORAGE_UNAVAILABLE', 'hub cannot be reached');
        const found = manifests.get(reference);
        if (found === undefined) throw new ShoalError('MANIFEST_UNKNOWN', `no ${reference}`);
        return { ...found, digest: sha256(found.bytes) };
      },
      headManifest: async (tag: string) => {
        state.asked.push(`HEAD ${repo}:${tag}`);
        if (state.down) throw new ShoalError('STORAGE_UNAVAILABLE', 'hub cannot be reached');
        const found = manifests.get(tag);
        if (found === undefined) throw new ShoalError('MANIFEST_UNKNOWN', `no ${tag}`);
        return sha256(found.bytes);
      },
    }),
  };
};
