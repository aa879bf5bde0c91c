import type { ProjectionStore } from '../../domain';

/** Every document of one partition, in id order, read page by page. */
export async function* listPartition<D>(
  store: ProjectionStore,
  projection: string,
  partition: string,
  pageSize = 1000,
): AsyncGenerator<{ id: string; doc: D }> {
  let after: string | undefined;
  for (;;) {
    const page = await store.list<D>(projection, partition, {
      ...(after !== undefined && { after }),
      limit: pageSize,
    });
    yield* page;
    if (page.length < pageSize) return;
    after = page[page.length - 1]?.id;
  }
}

/** Every document of one partition as an array. */
export const listAllOf = async <D>(
  store: ProjectionStore,
  projection: string,
  partition: string,
): Promise<Array<{ id: string; doc: D }>> => {
  const out: Array<{ id: string; doc: D }> = [];
  for await (const row of listPartition<D>(store, projection, partition)) out.push(row);
  return out;
};
