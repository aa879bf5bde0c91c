import { randomBytes } from 'node:crypto';

/**
 * Upload session ids name the origin that holds the session, so any client can route a
 * PATCH or PUT to it without shared state: `base64url(originId) "." base64url(16 random
 * bytes)`. URL-safe, and the random part doubles as the session's file name.
 */
export const newSessionId = (originId: string): { id: string; file: string } => {
  const file = randomBytes(16).toString('base64url');
  return { id: `${Buffer.from(originId, 'utf8').toString('base64url')}.${file}`, file };
};

const grammar = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{22})$/;

/** The origin id and file name in a session id, or undefined when it is not one. */
export const parseSessionId = (id: string): { originId: string; file: string } | undefined => {
  const match = grammar.exec(id);
  if (match === null) return undefined;
  const originId = Buffer.from(match[1] as string, 'base64url').toString('utf8');
  // Round-trip: reject non-canonical encodings so one session has one id.
  if (Buffer.from(originId, 'utf8').toString('base64url') !== match[1]) return undefined;
  return { originId, file: match[2] as string };
};
