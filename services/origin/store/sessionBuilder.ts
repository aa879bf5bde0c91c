import { MetainfoBuilder, minPieceLength } from '../../../p2p/metainfo';

/**
 * The hash state of an upload session: the SHA-256 of the whole blob only. Piece hashes
 * (the metainfo) would double the hashing on the push path, and the right piece length is
 * not known before the session ends; the write-back computes them in the pass that copies
 * the blob to the backend (or a metainfo request, if one comes first).
 */
export const sessionBuilder = (): MetainfoBuilder => {
  const builder = new MetainfoBuilder(minPieceLength);
  builder.dropPieces();
  return builder;
};
