import type { PeerConnectionOptions } from '../../p2p/wire';
import { PeerConnection, wireErrorCodes } from '../../p2p/wire';
import { duplexPair } from './duplexPair';
import type { BlobScheduler } from '../../p2p/scheduler';

/**
 * An in-memory network for scheduler tests: `dial(address)` returns one end of a duplex pair
 * and hands the other to the scheduler listening at that address, which accepts it as a host
 * does (resolve the info hash, admit, then `accepted`/`acceptFailed`).
 */
export const memoryNetwork = (options: { highWaterMark?: number } = {}) => {
  const hosts = new Map<
    string,
    { scheduler: () => BlobScheduler | undefined; connection: PeerConnectionOptions }
  >();
  let refused = 0;

  const accept = (
    socket: ReturnType<typeof duplexPair>[number],
    host: { scheduler: () => BlobScheduler | undefined; connection: PeerConnectionOptions },
  ) => {
    const conn = new PeerConnection(socket, host.connection);
    let target: BlobScheduler | undefined;
    void conn
      .accept((remote) => {
        target = host.scheduler();
        if (target === undefined || target.infoHash !== remote.infoHash) return undefined;
        return target.admit(conn, remote).then((answer) => {
          if ('refuse' in answer) refused += 1;
          return answer;
        });
      })
      .then((result) => {
        if (result.ok) target?.accepted(conn);
        else target?.acceptFailed(conn);
      });
  };

  return {
    /** Makes `scheduler()` reachable at `address`. */
    listen(
      address: string,
      scheduler: () => BlobScheduler | undefined,
      connection: PeerConnectionOptions,
    ) {
      hosts.set(address, { scheduler, connection });
    },
    unlisten(address: string) {
      hosts.delete(address);
    },
    dial: async (address: string) => {
      const host = hosts.get(address);
      if (host === undefined) throw new Error(`connection refused: ${address}`);
      const [a, b] = duplexPair({ highWaterMark: options.highWaterMark });
      accept(b, host);
      return a;
    },
    get refused() {
      return refused;
    },
    codes: wireErrorCodes,
  };
};
