import { Type } from '@sinclair/typebox';

// TypeBox schemas for the value types, for event and HTTP schemas. The patterns are the same
// grammar as the parsers in this folder; the parsers stay the source of clear error messages.
export const DigestSchema = Type.String({
  pattern: '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$',
  description: 'content digest, sha256:<64 hex> or sha512:<128 hex>',
});
export const RepoNameSchema = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*$',
  description: 'repository name',
});
export const TagSchema = Type.String({
  pattern: '^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$',
  description: 'tag',
});
