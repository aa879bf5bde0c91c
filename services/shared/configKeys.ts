import type { TSchema } from '@sinclair/typebox';

// What a role's config schema offers, key by key: the YAML path, the `SHOAL_*` variable that
// overrides it, the default and the allowed values. `--help`, the README and the loader's
// error messages all read it from here, so they cannot disagree.

/** One settable key of a config schema (a leaf: a value, a list or a free map). */
export type ConfigKey = {
  /** YAML path segments, e.g. `['listen', 'port']`. */
  readonly path: readonly string[];
  /** `SHOAL_LISTEN_PORT`; undefined for keys set in the config file only. */
  readonly env: string | undefined;
  readonly default: unknown;
  readonly description: string | undefined;
  /** The allowed values of an enumeration (a union of literals). */
  readonly values: readonly unknown[] | undefined;
};

const isObjectNode = (node: TSchema): boolean =>
  node.type === 'object' && node.properties !== undefined;

/** The values of a union of literals (`sqlite | kafka | eventstoredb`), else undefined. */
export const literalValues = (node: TSchema): unknown[] | undefined => {
  const members = node.anyOf as TSchema[] | undefined;
  if (members === undefined || !members.every((m) => m.const !== undefined)) return undefined;
  return members.map((m) => m.const);
};

/**
 * Words of a camelCase key: `requestTimeoutPerMiBMs` → request, Timeout, Per, MiB, Ms. Binary
 * units (KiB, MiB, GiB, TiB) are one word, so their variables stay readable (`…_PER_MIB_MS`).
 */
const words = (key: string): string[] =>
  key.match(/[KMGT]iB|[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g) ?? [key];

/** The variable of a YAML path: `SHOAL_` and the path's words in upper snake case. */
export const envName = (path: readonly string[]): string =>
  `SHOAL_${path.flatMap(words).join('_').toUpperCase()}`;

/** Lists of objects and free maps (namespace routes, headers) are set in the config file only. */
const fromEnv = (node: TSchema): boolean =>
  !(node.type === 'array' && (node.items as TSchema | undefined)?.type === 'object') &&
  !(node.type === 'object' && node.patternProperties !== undefined);

/** Every settable key of a schema, in schema order. */
export const configKeys = (schema: TSchema): ConfigKey[] => {
  const out: ConfigKey[] = [];
  const walk = (node: TSchema, path: string[]) => {
    if (isObjectNode(node)) {
      for (const [key, child] of Object.entries(node.properties as Record<string, TSchema>)) {
        walk(child, [...path, key]);
      }
      return;
    }
    out.push({
      path,
      env: fromEnv(node) ? envName(path) : undefined,
      default: node.default,
      description: node.description as string | undefined,
      values: literalValues(node),
    });
  };
  walk(schema, []);
  return out;
};

/**
 * The schema with `additionalProperties: false` on every object that lists its properties,
 * so a misspelt key is an error instead of being ignored. Objects that say otherwise keep
 * their rule, and free maps (`Type.Record`: `patternProperties`) accept any key as before.
 */
export const strictSchema = <S extends TSchema>(schema: S): S => {
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (typeof node !== 'object' || node === null) return node;
    // Spread keeps TypeBox's symbol keys (Kind, Optional), which Value relies on.
    const copy: Record<string | symbol, unknown> = {
      ...(node as Record<string | symbol, unknown>),
    };
    for (const key of Object.keys(copy)) {
      if (key !== 'default' && key !== 'const' && key !== 'examples') copy[key] = visit(copy[key]);
    }
    if (
      copy['type'] === 'object' &&
      copy['properties'] !== undefined &&
      copy['patternProperties'] === undefined &&
      copy['additionalProperties'] === undefined
    ) {
      copy['additionalProperties'] = false;
    }
    return copy;
  };
  return visit(schema) as S;
};

/** The schema node at a YAML path, through objects, arrays and (first matching) unions. */
export const nodeAt = (schema: TSchema, path: readonly string[]): TSchema | undefined => {
  let node: TSchema | undefined = schema;
  for (const segment of path) {
    if (node === undefined) return undefined;
    node = childOf(node, segment);
  }
  return node;
};

const childOf = (node: TSchema, segment: string): TSchema | undefined => {
  if (node.type === 'array') return node.items as TSchema;
  const props = node.properties as Record<string, TSchema> | undefined;
  if (props?.[segment] !== undefined) return props[segment];
  const pattern = node.patternProperties as Record<string, TSchema> | undefined;
  if (pattern !== undefined) return Object.values(pattern)[0];
  for (const member of (node.anyOf as TSchema[] | undefined) ?? []) {
    const child = childOf(member, segment);
    if (child !== undefined) return child;
  }
  return undefined;
};
