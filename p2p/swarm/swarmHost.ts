import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import { connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Bandwidth } from '../bandwidth';
import type { Metainfo } from '../metainfo';
import { infoHash as infoHashOf } from '../metainfo';
import type {
  PieceSink,
  PieceSource,
  SchedulerConfig,
  SchedulerLogger,
  SchedulerOptions,
  SchedulerStats,
} from '../scheduler';
import { BlobScheduler } from '../scheduler';
import type { PeerConnectionOptions, WireStats } from '../wire';
import { PeerConnection, createWireStats } from '../wire';
import type { Announcer } from './announcer';

export type SwarmHostOptions = {
  /** 20–32 bytes; default: SHA-256 of the advertised address cut to 20 (stable on restarts). */
  readonly peerId?: Buffer;
  readonly origin?: boolean;
  /** The peer port. Port 0 picks a free one. */
  readonly listen: { readonly host: string; readonly port: number };
  /** The host others dial; default the listen host (which must then not be a wildcard). */
  readonly advertiseHost?: string;
  /** This host's zone, sent with every announce (see `Announcement.zone`). */
  readonly zone?: string;
  readonly scheduler?: Partial<SchedulerConfig>;
  /** Host-wide limits shared by every connection of every blob. */
  readonly bandwidth?: Bandwidth;
  /** Where swarms announce, unless `join` names another. */
  readonly announcer?: Announcer;
  readonly logger?: SchedulerLogger;
  readonly dialTimeoutMs?: number;
  /** Delays between failed announces: from `min` doubling up to `max`. */
  readonly announceRetryMs?: { readonly min: number; readonly max: number };
  /**
   * An incoming peer asks for a swarm this host is not in: join it (e.g. a blob still on
   * disk) and return the swarm, or undefined to refuse with `UNKNOWN_SWARM`.
   */
  readonly resolveUnknown?: (infoHash: string) => Promise<Swarm | undefined>;
  /** Told of every piece any swarm of this host stored (metrics). */
  readonly onPieceStored?: SchedulerOptions['onPieceStored'];
  readonly connection?: Pick<
    PeerConnectionOptions,
    'handshakeTimeoutMs' | 'keepaliveIntervalMs' | 'idleTimeoutMs' | 'blockLength'
  >;
};

export type JoinOptions = {
  readonly announcer?: Announcer;
  /** Settings for this blob only, over the host's. */
  readonly scheduler?: Partial<SchedulerConfig>;
  /** Called once the swarm has closed (seeding over, failure, `leave`). */
  readonly onClose?: (swarm: Swarm, reason: string) => void;
};

/** One blob's swarm on this host. */
export type Swarm = {
  readonly infoHash: string;
  readonly digest: string;
  readonly metainfo: Metainfo;
  readonly scheduler: BlobScheduler;
  /** Resolves once the blob is complete and verified (at once for a seed). */
  readonly done: Promise<void>;
  /** Resolves with the reason once the swarm closed. */
  readonly closed: Promise<string>;
  /** Leaves the swarm (announcing `stopped`). */
  readonly leave: (reason?: string) => Promise<void>;
};

export type SwarmTotals = Pick<
  SchedulerStats,
  | 'bytesReceived'
  | 'bytesDownloaded'
  | 'originBytes'
  | 'duplicateBytes'
  | 'bytesUploaded'
  | 'badPieces'
  | 'timeouts'
  | 'busySent'
  | 'blacklisted'
>;

export interface SwarmHost {
  readonly peerId: Buffer;
  /** `host:port` others dial. */
  readonly address: string;
  readonly port: number;
  readonly wire: WireStats;
  /** Joins (or returns the open) swarm of a blob, serving from and writing to `store`. */
  join(metainfo: Metainfo, store: PieceSource | PieceSink, options?: JoinOptions): Swarm;
  get(infoHash: string): Swarm | undefined;
  swarms(): Swarm[];
  /** Counters over every swarm this host ran, closed ones included. */
  totals(): SwarmTotals;
  /** Hands an accepted stream to the host, as the listener does (tests, other transports). */
  accept(socket: Duplex): void;
  close(): Promise<void>;
}

const wildcard = new Set(['0.0.0.0', '::', '[::]', '']);

/** `host:port`, bracketing IPv6 hosts. */
export const formatAddress = (host: string, port: number): string =>
  `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;

/** Splits `host:port` / `[v6]:port`. */
export const parseAddress = (address: string): { host: string; port: number } => {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`not a host:port address: ${address.slice(0, 80)}`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
};

const dialTcp = (address: string, timeoutMs: number): Promise<Duplex> =>
  new Promise((resolve, reject) => {
    let target: { host: string; port: number };
    try {
      target = parseAddress(address);
    } catch (error) {
      reject(error);
      return;
    }
    const socket: Socket = connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`dial ${address}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });

const emptyTotals = (): SwarmTotals => ({
  bytesReceived: 0,
  bytesDownloaded: 0,
  originBytes: 0,
  duplicateBytes: 0,
  bytesUploaded: 0,
  badPieces: 0,
  timeouts: 0,
  busySent: 0,
  blacklisted: 0,
});

const addTotals = (into: SwarmTotals, stats: SwarmTotals): void => {
  for (const key of Object.keys(into) as (keyof SwarmTotals)[]) into[key] += stats[key];
};

/**
 * A host's peer port: one TCP listener for every blob, the dialer, per-blob schedulers and
 * their announce loops. An incoming handshake names an info hash; the host hands the
 * connection to that blob's scheduler (or refuses `UNKNOWN_SWARM`).
 */
export const createSwarmHost = async (options: SwarmHostOptions): Promise<SwarmHost> => {
  const log = options.logger ?? { debug: () => {}, info: () => {}, warn: () => {} };
  const wire = createWireStats();
  const swarms = new Map<string, Swarm>();
  const finished = emptyTotals();
  const loops = new Set<Promise<void>>();
  const retry = options.announceRetryMs ?? { min: 500, max: 5000 };
  const dialTimeoutMs = options.dialTimeoutMs ?? 5000;
  let closing = false;

  if (options.advertiseHost === undefined && wildcard.has(options.listen.host)) {
    throw new Error(`the peer port listens on ${options.listen.host}: set an advertise host`);
  }
  const server: Server = createServer({ noDelay: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const address = formatAddress(options.advertiseHost ?? options.listen.host, port);
  const peerId =
    options.peerId ?? createHash('sha256').update(`shoal-peer:${address}`).digest().subarray(0, 20);
  const connectionOptions: Omit<PeerConnectionOptions, 'peerId' | 'origin'> = {
    ...options.connection,
    stats: wire,
    ...(options.bandwidth !== undefined && {
      ingress: options.bandwidth.ingress,
      egress: options.bandwidth.egress,
    }),
  };

  const accept = (socket: Duplex): void => {
    const conn = new PeerConnection(socket, {
      ...connectionOptions,
      peerId,
      origin: options.origin === true,
    });
    let target: BlobScheduler | undefined;
    void conn
      .accept(async (remote) => {
        if (closing) return undefined;
        const swarm =
          swarms.get(remote.infoHash) ?? (await options.resolveUnknown?.(remote.infoHash));
        if (swarm === undefined || swarm.scheduler.closed) return undefined;
        target = swarm.scheduler;
        return target.admit(conn, remote);
      })
      .then((result) => {
        if (result.ok) target?.accepted(conn);
        else target?.acceptFailed(conn);
      });
  };
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    accept(socket);
  });

  /** Cuts an announce loop's wait short (set while it sleeps). */
  type Waker = { wake?: () => void };

  const announceLoop = (swarm: Swarm, announcer: Announcer, waker: Waker): Promise<void> => {
    const { scheduler } = swarm;
    const wake = () => waker.wake?.();
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          waker.wake = undefined;
          resolve();
        }, ms);
        timer.unref();
        waker.wake = () => {
          waker.wake = undefined;
          clearTimeout(timer);
          resolve();
        };
      });
    const announcement = (stopped: boolean) => ({
      infoHash: swarm.infoHash,
      digest: swarm.digest,
      peerId: peerId.toString('hex'),
      address,
      complete: scheduler.complete,
      have: scheduler.have,
      origin: options.origin === true,
      ...(options.zone !== undefined && options.zone !== '' && { zone: options.zone }),
      downloaded: scheduler.stats.bytesDownloaded,
      fromOrigins: scheduler.stats.originBytes,
      uploaded: scheduler.stats.bytesUploaded,
      left: scheduler.complete
        ? 0
        : Math.max(0, swarm.metainfo.length - scheduler.have * swarm.metainfo.pieceLength),
      ...(stopped && { stopped: true }),
    });
    // Completion is news: announce it at once.
    void scheduler.done.then(wake, () => undefined);
    void swarm.closed.then(wake);
    return (async () => {
      let failures = 0;
      let announcedComplete = scheduler.complete;
      while (!scheduler.closed) {
        let wait: number;
        let answered = false;
        try {
          const answer = await announcer.announce(announcement(false));
          announcedComplete = announcement(false).complete;
          if (!scheduler.complete) scheduler.addPeers(answer.peers);
          failures = 0;
          answered = true;
          wait = Math.min(Math.max(answer.intervalMs, 50), 60_000);
        } catch (error) {
          failures += 1;
          wait = Math.min(retry.max, retry.min * 2 ** (failures - 1));
          log.warn({ err: error, digest: swarm.digest }, 'announce failed');
        }
        if (scheduler.closed) break;
        if (answered && scheduler.complete && !announcedComplete) continue;
        await sleep(wait);
      }
      await announcer.announce(announcement(true)).catch(() => undefined);
    })();
  };

  const join = (metainfo: Metainfo, store: PieceSource | PieceSink, opts: JoinOptions = {}) => {
    const infoHash = infoHashOf(metainfo);
    const open = swarms.get(infoHash);
    if (open !== undefined && !open.scheduler.closed) return open;
    if (closing) throw new Error('the swarm host is closing');
    let onClosed!: (reason: string) => void;
    const closed = new Promise<string>((resolve) => (onClosed = resolve));
    const waker: Waker = {};
    const scheduler = new BlobScheduler({
      metainfo,
      store,
      peerId,
      origin: options.origin === true,
      config: { ...options.scheduler, ...opts.scheduler },
      connection: connectionOptions,
      dial: (to) => dialTcp(to, dialTimeoutMs),
      logger: log,
      onClose: (reason) => onClosed(reason),
      // Short of peers: announce now (the loop's sleep ends early).
      onPeersWanted: () => waker.wake?.(),
      ...(options.onPieceStored !== undefined && { onPieceStored: options.onPieceStored }),
    });
    const swarm: Swarm = {
      infoHash,
      digest: metainfo.digest,
      metainfo,
      scheduler,
      done: scheduler.done,
      closed,
      leave: async (reason = 'left') => {
        scheduler.close(reason);
        await closed;
      },
    };
    swarms.set(infoHash, swarm);
    void closed.then((reason) => {
      if (swarms.get(infoHash) === swarm) swarms.delete(infoHash);
      addTotals(finished, scheduler.stats);
      opts.onClose?.(swarm, reason);
    });
    const announcer = opts.announcer ?? options.announcer;
    if (announcer !== undefined) {
      const loop = announceLoop(swarm, announcer, waker);
      loops.add(loop);
      void loop.finally(() => loops.delete(loop));
    }
    return swarm;
  };

  return {
    peerId,
    address,
    port,
    wire,
    join,
    get: (infoHash) => swarms.get(infoHash),
    swarms: () => [...swarms.values()],
    totals: () => {
      const totals = { ...finished };
      for (const swarm of swarms.values()) addTotals(totals, swarm.scheduler.stats);
      return totals;
    },
    accept,
    close: async () => {
      if (closing) return;
      closing = true;
      const open = [...swarms.values()];
      await Promise.all(open.map((swarm) => swarm.leave('host closing')));
      await Promise.all([...loops]);
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await stopped;
    },
  };
};

/** A random peer id (tests, or hosts that want a new identity each start). */
export const randomPeerId = (): Buffer => randomBytes(20);
