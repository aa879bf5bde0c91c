import type { PieceData, PieceRequest, WireConnection } from '../wire';
import { wireErrorCodes } from '../wire';
import type { Peer, QueuedUpload, SwarmState } from './swarmState';

/*
 * Serving pieces: the peers' requests queue for `maxUploads` upload slots; agents serve first
 * come first served, origins the least-sent pieces first and deflect repeats. Handlers of the
 * scheduler's loop (see `scheduler.ts`).
 */

/** A peer asks for a range (`peer` undefined: the connection is not one of ours). */
export const onRequest = (
  s: SwarmState,
  conn: WireConnection,
  peer: Peer | undefined,
  request: PieceRequest,
): void => {
  if (peer === undefined) {
    conn.reject(request.index, wireErrorCodes.UNAVAILABLE, 'not connected');
    return;
  }
  if (!s.source.has(request.index)) {
    conn.reject(request.index, wireErrorCodes.UNAVAILABLE, 'piece not here');
    return;
  }
  if (s.activeUploads >= s.config.maxUploads && s.uploadQueue.length >= s.config.maxQueuedUploads) {
    // It would wait into its timeout here and be sent twice: let it ask someone else now.
    s.stats.busySent += 1;
    conn.reject(request.index, wireErrorCodes.BUSY, 'upload queue full');
    return;
  }
  s.uploadQueue.push({ peer, ...request, arrival: (s.arrivals += 1) });
  pumpUploads(s);
};

/** The peer cancelled a request: it leaves the queue (an upload under way is the wire's). */
export const onCancel = (s: SwarmState, peer: Peer, request: PieceRequest): void => {
  s.uploadQueue = s.uploadQueue.filter((u) => !(u.peer === peer && u.index === request.index));
};

/**
 * Starts queued uploads while fewer than `maxUploads` are in flight. Agents serve first
 * come first served (no request starves); origins serve the pieces sent least often
 * first (never-sent pieces before repeats) and deflect repeats (`shouldDeflect`).
 */
const pumpUploads = (s: SwarmState): void => {
  while (s.activeUploads < s.config.maxUploads && s.uploadQueue.length > 0) {
    let best = 0;
    for (let i = 1; s.isOrigin && i < s.uploadQueue.length; i += 1) {
      const a = s.uploadQueue[i] as QueuedUpload;
      const b = s.uploadQueue[best] as QueuedUpload;
      const sa = s.served[a.index] ?? 0;
      const sb = s.served[b.index] ?? 0;
      if (sa < sb || (sa === sb && a.arrival < b.arrival)) best = i;
    }
    const upload = s.uploadQueue.splice(best, 1)[0] as QueuedUpload;
    const { peer, index } = upload;
    if (s.byConn.get(peer.conn) !== peer || !peer.conn.isOpen) continue;
    if (shouldDeflect(s, peer, index)) {
      peer.busyAnswers.set(index, (peer.busyAnswers.get(index) ?? 0) + 1);
      s.stats.busySent += 1;
      peer.conn.reject(index, wireErrorCodes.BUSY, 'other peers have this piece');
      continue;
    }
    const data = readPiece(s, upload);
    if (data === undefined) {
      peer.conn.reject(index, wireErrorCodes.UNAVAILABLE, 'piece not here');
      continue;
    }
    s.activeUploads += 1;
    if (s.served[index] === 0) s.neverSent -= 1;
    s.served[index] = (s.served[index] ?? 0) + 1;
    peer.uploads += 1;
    const conn = peer.conn;
    const unavailable = () => conn.reject(index, wireErrorCodes.UNAVAILABLE, 'cannot read');
    void data
      .then((bytes) => {
        if (bytes !== undefined) return conn.sendPiece(index, upload.begin, bytes);
        unavailable();
        return false;
      })
      .catch(() => {
        unavailable();
        return false;
      })
      .then((ok) => s.post({ type: 'uploaded', conn, index, ok, bytes: upload.length }));
  }
};

/**
 * An upload's bytes. From a source that reads into given buffers, the connection reads the
 * range straight into its pooled frame buffers; otherwise pieces up to 1 MiB come in one
 * read into one buffer, longer ones as a stream of 64 KiB reads.
 */
const readPiece = (
  s: SwarmState,
  upload: QueuedUpload,
): Promise<PieceData | undefined> | undefined => {
  const { index, begin, length } = upload;
  const source = s.source;
  if (!source.has(index)) return undefined;
  if (source.readv !== undefined) {
    const readv = source.readv.bind(source);
    return Promise.resolve({
      readv: (offset: number, targets: readonly Buffer[]) => readv(index, begin + offset, targets),
    });
  }
  if (source.read !== undefined && length <= 1024 * 1024) {
    return source.read(index, begin, length);
  }
  const stream = source.createReadStream(index, begin, length);
  return stream === undefined ? undefined : Promise.resolve(stream);
};

/**
 * Origins serve pieces the swarm lacks before repeats: a request for a piece already sent
 * is answered BUSY — while some piece was never sent, or while `originBusyAvailability`
 * connected agents hold it — so the agent asks for another piece (or another peer). At most
 * `originBusyRepeats` times per agent and piece: asked again, the origin serves it (nobody
 * starves).
 */
const shouldDeflect = (s: SwarmState, peer: Peer, index: number): boolean => {
  const threshold = s.config.originBusyAvailability;
  if (!s.isOrigin || threshold === 0 || (s.served[index] ?? 0) === 0) return false;
  if ((peer.busyAnswers.get(index) ?? 0) >= s.config.originBusyRepeats) return false;
  return s.neverSent > 0 || (s.agentAvailability[index] ?? 0) >= threshold;
};

/** An upload finished (or failed): its slot goes to the next queued request. */
export const onUploaded = (
  s: SwarmState,
  conn: WireConnection,
  ok: boolean,
  bytes: number,
): void => {
  s.activeUploads -= 1;
  const peer = s.byConn.get(conn);
  if (peer !== undefined) {
    peer.uploads -= 1;
    if (ok) peer.lastTraffic = s.now();
  }
  if (ok) s.stats.bytesUploaded += bytes;
  pumpUploads(s);
};
