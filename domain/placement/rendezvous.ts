/**
 * Rendezvous (highest-random-weight) hashing: every origin scores every digest, and a
 * digest's owners are the origins with the highest scores. Adding or removing an origin moves
 * only the digests it wins or held (about R/N of them); everything else stays put, so a
 * restart or a new member never reshuffles the cluster. Pure and deterministic: every
 * process that sees the same members computes the same owners.
 *
 * The score is 64-bit FNV-1a over `digest`, a NUL, and the origin id (UTF-8), passed through
 * murmur3's 64-bit finalizer: FNV alone mixes the last bytes (the id) poorly into the high
 * bits, which decide the order. Ties (vanishingly rare) go to the smaller id.
 */

// 64-bit arithmetic on two uint32 halves: BigInt is several times slower on this hot path (every
// blob read ranks the ring). Values are [hi, lo].
type U64 = [number, number];
const two32 = 0x1_0000_0000;

/** (a * b) mod 2^64, in 16-bit limbs so no partial product loses precision. */
const mul64 = (a: U64, b: U64): U64 => {
  const [a3, a2, a1, a0] = [a[0] >>> 16, a[0] & 0xffff, a[1] >>> 16, a[1] & 0xffff];
  const [b3, b2, b1, b0] = [b[0] >>> 16, b[0] & 0xffff, b[1] >>> 16, b[1] & 0xffff];
  const r0 = a0 * b0;
  const r1 = a1 * b0 + a0 * b1 + Math.floor(r0 / 0x10000);
  const r2 = a2 * b0 + a1 * b1 + a0 * b2 + Math.floor(r1 / 0x10000);
  const r3 = a3 * b0 + a2 * b1 + a1 * b2 + a0 * b3 + Math.floor(r2 / 0x10000);
  return [
    (((r3 & 0xffff) << 16) | (r2 & 0xffff)) >>> 0,
    (((r1 & 0xffff) << 16) | (r0 & 0xffff)) >>> 0,
  ];
};

const fnvOffset: U64 = [0xcbf29ce4, 0x84222325];
const utf8 = new TextEncoder();

/** FNV-1a 64 over bytes; the prime is 2^40 + 0x1b3, so the multiply is a shift and an add. */
const fnv1a = (state: U64, bytes: ArrayLike<number>): U64 => {
  let [hi, lo] = state;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ (bytes[i] as number)) >>> 0;
    const low = lo * 0x1b3;
    const carry = Math.floor(low / two32);
    hi = (hi * 0x1b3 + carry + lo * 0x100) >>> 0;
    lo = low >>> 0;
  }
  return [hi, lo];
};

/** UTF-8 bytes of a string; ids and digests are ASCII, which needs no encoder. */
const bytesOf = (text: string): ArrayLike<number> => {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) {
    const out = new Array<number>(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  return utf8.encode(text);
};

const c1: U64 = [0xff51afd7, 0xed558ccd];
const c2: U64 = [0xc4ceb9fe, 0x1a85ec53];
/** k ^= k >> 33 */
const shiftXor = ([hi, lo]: U64): U64 => [hi, (lo ^ (hi >>> 1)) >>> 0];

/** murmur3 fmix64: every input bit affects every output bit. */
const fmix64 = (k: U64): U64 => shiftXor(mul64(shiftXor(mul64(shiftXor(k), c1)), c2));

const toBigInt = ([hi, lo]: U64): bigint => (BigInt(hi) << 32n) | BigInt(lo);

/** A function scoring one member for one key; higher wins. Injectable for tests. */
export type RendezvousScore = (key: string, member: string) => bigint;

const separator = [0];

/** The default score: fmix64(FNV-1a-64(key ‖ 0x00 ‖ member)). */
export const rendezvousScore: RendezvousScore = (key, member) =>
  toBigInt(fmix64(fnv1a(keyState(key), bytesOf(member))));

const keyState = (key: string): U64 => fnv1a(fnv1a(fnvOffset, bytesOf(key)), separator);

const compareU64 = (a: U64, b: U64) => (a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1]);

/** Every member, best first, for one key (callers walk on past the owners on failures). */
export const rankMembers = (
  key: string,
  members: readonly string[],
  score: RendezvousScore = rendezvousScore,
): string[] => {
  const unique = [...new Set(members)];
  const byMember = (a: string, b: string) => (a < b ? -1 : 1);
  if (score !== rendezvousScore) {
    const scored = unique.map((member) => ({ member, score: score(key, member) }));
    scored.sort((a, b) =>
      a.score === b.score ? byMember(a.member, b.member) : a.score > b.score ? -1 : 1,
    );
    return scored.map((s) => s.member);
  }
  // The key's FNV state is shared by all members: hash it once.
  const prefix = keyState(key);
  const scored = unique.map((member) => ({
    member,
    score: fmix64(fnv1a(prefix, bytesOf(member))),
  }));
  scored.sort((a, b) => compareU64(b.score, a.score) || byMember(a.member, b.member));
  return scored.map((s) => s.member);
};

/**
 * The owners of a digest: the top `replicas` members by rendezvous score, best first.
 * Fewer when the ring is smaller than `replicas`; none for an empty ring.
 */
export const owners = (
  digest: string,
  originIds: readonly string[],
  replicas: number,
  score: RendezvousScore = rendezvousScore,
): string[] => rankMembers(digest, originIds, score).slice(0, Math.max(0, replicas));
