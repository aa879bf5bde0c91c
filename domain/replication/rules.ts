import { truncate } from '../oci/digest';
import type { Position } from '../log/event';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import type { RuleScope } from './patterns';
import { matchesGlob, parsePattern } from '../oci/glob';
import { ruleMatches } from './patterns';

/** A replication rule as its `ReplicationRuleAdded` event states it. */
export type ReplicationRule = RuleScope & {
  readonly id: string;
  readonly name?: string;
  /** Base URL of an OCI Distribution API registry: `http(s)://host[:port]`. */
  readonly destination: string;
  /** Replicate the current state of every matching tag, not only changes after the rule. */
  readonly backfill: boolean;
};

/** What `rules add` takes before validation. */
export type RuleInput = {
  readonly name?: string;
  readonly repoPattern: string;
  readonly tagPattern?: string;
  readonly destination: string;
  readonly backfill?: boolean;
};

const ruleIdGrammar = /^[A-Za-z0-9._-]{1,128}$/;

export const parseRuleId = (input: string): Result<string> =>
  ruleIdGrammar.test(input)
    ? ok(input)
    : fail(
        new ShoalError('PARAMETER_INVALID', `invalid rule id "${truncate(input)}"`, {
          detail: { rule: truncate(input) },
        }),
      );

/**
 * A destination registry's base URL, normalised to `scheme://host[:port]`. Refuses user
 * information (credentials never go on the log: they come from configuration per host), a
 * path, a query and a fragment.
 */
export const parseDestination = (input: string): Result<string> => {
  // User information is never echoed: it may hold a password.
  const shown = truncate(input.replace(/^([^:/]*:\/\/)[^/@]*@/, '$1***@'));
  const bad = (why: string) =>
    fail(
      new ShoalError('PARAMETER_INVALID', `invalid destination "${shown}": ${why}`, {
        detail: { destination: shown },
      }),
    );
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return bad('want a registry URL such as https://registry.example.com');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad('want http or https');
  if (url.username !== '' || url.password !== '') {
    return bad(
      'credentials do not belong in the URL (they would be on the log): give the URL without ' +
        'them and configure them for the process that runs the replicator (shoal dev, ' +
        'build-index or replicator), under replication.credentials in its YAML config ' +
        `("${url.host}": {username, password} or {token}) or as JSON in ` +
        `SHOAL_REPLICATION_CREDENTIALS, e.g. '{"${url.host}":{"username":"u","password":"p"}}'`,
    );
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    return bad('want the registry root, without a path (repositories keep their names)');
  }
  return ok(`${url.protocol}//${url.host}`);
};

/**
 * Whether a destination (as `parseDestination` normalised it) matches an allowlist of globs
 * over destination URLs: `https://*.example.com`, `http://127.0.0.1:*`, `**` for any.
 */
export const destinationAllowed = (allowlist: readonly string[], destination: string): boolean =>
  allowlist.some((pattern) => matchesGlob(pattern, destination));

/** `host[:port]` of a destination: the key credentials are configured under. */
export const destinationHost = (destination: string): string => new URL(destination).host;

/** Validates a rule's fields (not its id, which the writer assigns). */
export const validateRuleInput = (input: RuleInput): Result<Omit<ReplicationRule, 'id'>> => {
  const repo = parsePattern(input.repoPattern, 'repository');
  if (!repo.ok) return repo;
  const tag = parsePattern(input.tagPattern ?? '*', 'tag');
  if (!tag.ok) return tag;
  const destination = parseDestination(input.destination);
  if (!destination.ok) return destination;
  if (input.name !== undefined && (input.name.length === 0 || input.name.length > 128)) {
    return fail(new ShoalError('PARAMETER_INVALID', 'rule name must be 1 to 128 characters'));
  }
  return ok({
    ...(input.name !== undefined && { name: input.name }),
    repoPattern: repo.value,
    tagPattern: tag.value,
    destination: destination.value,
    backfill: input.backfill ?? false,
  });
};

/** A readable rule id: the name's letters, a dash, and a random suffix the caller supplies. */
export const ruleIdFor = (name: string | undefined, suffix: string): string => {
  const slug = (name ?? 'rule')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 48);
  return `${slug.length > 0 ? slug : 'rule'}-${suffix}`;
};

/**
 * The log position a rule starts replicating from (exclusive): a backfilling rule reads the
 * log from the start, so every tag that exists is considered; otherwise only changes after
 * the rule was added.
 */
export const ruleStartPosition = (backfill: boolean, addedPosition: Position): Position =>
  backfill ? 0 : addedPosition;

/** A tag change a rule may have to replicate. */
export type TagChange = {
  readonly kind: 'pushed' | 'deleted';
  readonly repo: string;
  readonly tag: string;
  readonly position: Position;
};

/**
 * Whether a rule must act on a tag change: it matches the rule's patterns and comes after
 * where the rule starts. Changes before the rule was added count only for a backfilling rule,
 * and only to make tags that exist now exist at the destination (the caller checks that).
 */
export const ruleSelects = (
  rule: RuleScope & { readonly backfill: boolean },
  addedPosition: Position,
  change: TagChange,
): boolean =>
  change.position > ruleStartPosition(rule.backfill, addedPosition) &&
  ruleMatches(rule, change.repo, change.tag);
