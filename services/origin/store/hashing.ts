import { MetainfoBuilder, minPieceLength, targetPieceCount } from '../../../p2p/metainfo';

/**
 * A builder for a blob whose final size is not known yet (chunked uploads, bodies without a
 * length): it hashes pieces at the smallest piece length, which is the right one for every
 * blob up to {@link smallBlobLimit}; past that it keeps only the whole digest, and the
 * metainfo is computed from the stored file once the size is known.
 */
export const sessionBuilder = (): MetainfoBuilder => new MetainfoBuilder(minPieceLength);

/** The largest size whose piece length is {@link minPieceLength}. */
export const smallBlobLimit = minPieceLength * targetPieceCount;

/** Call after each `update` of a {@link sessionBuilder}. */
export const trackPieces = (builder: MetainfoBuilder): void => {
  if (builder.hasPieces && builder.length > smallBlobLimit) builder.dropPieces();
};
