import { createHash } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Result } from '../../domain';
import { ShoalError, fail, ok } from '../../domain';

/**
 * What a peer needs to fetch a blob in pieces and check each one: the blob's digest and
 * length, the piece length, and the SHA-256 of every piece in order (the last piece may be
 * shorter). Its {@link infoHash} names the swarm.
 */
export type Metainfo = {
  /** The whole blob's digest, `sha256:<hex>`. */
  readonly digest: string;
  readonly length: number;
  readonly pieceLength: number;
  /** Lowercase hex SHA-256 of each piece. */
  readonly pieceHashes: readonly string[];
};

/** Smallest piece: small blobs still split into a few pieces that peers can trade. */
export const minPieceLength = 256 * 1024;
/** Largest piece: bounds a request's latency and a lost piece's cost. */
export const maxPieceLength = 16 * 1024 * 1024;
/** Aim for at most this many pieces (reached from 512 MiB to 32 GiB; bigger blobs get more). */
export const targetPieceCount = 2048;

/**
 * Piece length for a blob size: the smallest power of two giving at most
 * {@link targetPieceCount} pieces, clamped to [{@link minPieceLength}, {@link maxPieceLength}]:
 * 256 KiB up to 512 MiB, 512 KiB at 1 GiB, 1 MiB at 2 GiB, 2 MiB at 4 GiB, 16 MiB from 32 GiB
 * on. A piece is what a host can pass on only once it holds all of it, so a swarm fills at a
 * piece per hop: at fleet scale (the simulator's `kraken` scenario, 1,000 hosts, 1.4 GiB
 * layers) 1 MiB pieces instead of 2 MiB brought the median host from 11.1 to 10.2 s against a
 * 10.05 s bound, and origin egress from 1.44 to 1.28 × the size (4 MiB: 11.6 s). Pieces many
 * times the size of a block keep per-piece costs (a request, a hash, a `have` to each peer)
 * small; bitfields stay at 256 bytes. (Kraken uses 4 MiB for every size, Dragonfly size/500
 * clamped to 4–64 MiB.)
 */
export const pieceLengthFor = (size: number): number => {
  let length = minPieceLength;
  while (length < maxPieceLength && length * targetPieceCount < size) length *= 2;
  return length;
};

export const pieceCountOf = (length: number, pieceLength: number): number =>
  Math.ceil(length / pieceLength);

/** Byte range `[start, end)` of one piece. */
export const pieceBounds = (
  metainfo: Pick<Metainfo, 'length' | 'pieceLength'>,
  index: number,
): { start: number; end: number } => {
  const start = index * metainfo.pieceLength;
  return { start, end: Math.min(start + metainfo.pieceLength, metainfo.length) };
};

const bstring = (s: string) => `${Buffer.byteLength(s)}:${s}`;
const bint = (n: number) => `i${n}e`;

/**
 * The canonical encoding the info hash is taken over: a bencoded dictionary with keys in
 * byte order, so every implementation that agrees on the fields agrees on the bytes:
 * `d6:digest71:sha256:…6:lengthi<n>e11:pieceHashesl64:<hex>…e11:pieceLengthi<n>ee`.
 */
export const canonicalMetainfo = (metainfo: Metainfo): Buffer =>
  Buffer.from(
    'd' +
      bstring('digest') +
      bstring(metainfo.digest) +
      bstring('length') +
      bint(metainfo.length) +
      bstring('pieceHashes') +
      `l${metainfo.pieceHashes.map(bstring).join('')}e` +
      bstring('pieceLength') +
      bint(metainfo.pieceLength) +
      'e',
    'utf8',
  );

/** The swarm's name: lowercase hex SHA-256 of {@link canonicalMetainfo}. */
export const infoHash = (metainfo: Metainfo): string =>
  createHash('sha256').update(canonicalMetainfo(metainfo)).digest('hex');

const MetainfoSchema = Type.Object(
  {
    digest: Type.String({ pattern: '^sha256:[a-f0-9]{64}$' }),
    length: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    pieceLength: Type.Integer({ minimum: 1, maximum: 1024 * 1024 * 1024 }),
    pieceHashes: Type.Array(Type.String({ pattern: '^[a-f0-9]{64}$' })),
  },
  { additionalProperties: false },
);
const check = TypeCompiler.Compile(MetainfoSchema);

/** JSON text of a metainfo (fields in a fixed order). */
export const encodeMetainfo = (metainfo: Metainfo): string =>
  JSON.stringify({
    digest: metainfo.digest,
    length: metainfo.length,
    pieceLength: metainfo.pieceLength,
    pieceHashes: metainfo.pieceHashes,
  });

/** Parses and checks metainfo JSON: schema, and as many piece hashes as the length needs. */
export const decodeMetainfo = (text: string): Result<Metainfo> => {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail(new ShoalError('PARAMETER_INVALID', 'metainfo is not valid JSON'));
  }
  return validateMetainfo(value);
};

export const validateMetainfo = (value: unknown): Result<Metainfo> => {
  if (!check.Check(value)) {
    const first = check.Errors(value).First();
    return fail(
      new ShoalError(
        'PARAMETER_INVALID',
        `invalid metainfo: ${first?.path || '(root)'}: ${first?.message ?? 'invalid'}`,
      ),
    );
  }
  const want = pieceCountOf(value.length, value.pieceLength);
  if (value.pieceHashes.length !== want) {
    return fail(
      new ShoalError(
        'PARAMETER_INVALID',
        `invalid metainfo: ${value.pieceHashes.length} piece hashes for ${want} pieces`,
      ),
    );
  }
  return ok(value);
};
