import { readFileSync } from 'node:fs';
import type { Static, TObject, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { ShoalError } from '../../domain';

/**
 * Loads one role's configuration: defaults from the schema, then the YAML file, then
 * environment overrides, then validation. This is the only place that reads `SHOAL_*`
 * variables. The result is frozen: modules receive it, they never re-read the environment.
 *
 * Environment names are the config path in upper snake case after `SHOAL_`:
 * `listen.port` ← `SHOAL_LISTEN_PORT`, `readYourWrites.timeoutMs` ← `SHOAL_READ_YOUR_WRITES_TIMEOUT_MS`.
 */
export const loadConfig = <S extends TObject>(
  schema: S,
  sources: {
    file?: string;
    /** Values set on the command line; they win over the file and the environment. */
    overrides?: Record<string, unknown>;
    env?: NodeJS.ProcessEnv;
  } = {},
): Readonly<Static<S>> => {
  let fromFile: unknown = {};
  if (sources.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (error) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `cannot read config file ${sources.file}: ${(error as Error).message}`,
      );
    }
    try {
      fromFile = parseYaml(text) ?? {};
    } catch (error) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `config file ${sources.file} is not valid YAML: ${(error as Error).message}`,
      );
    }
    if (typeof fromFile !== 'object' || Array.isArray(fromFile)) {
      throw new ShoalError('CONFIG_INVALID', `config file ${sources.file} must hold a mapping`);
    }
  }
  const merged = deepMerge(
    deepMerge(
      fromFile as Record<string, unknown>,
      envOverrides(schema, sources.env ?? process.env),
    ),
    sources.overrides ?? {},
  );
  return validateConfig(schema, merged, sources.file);
};

/** Defaults, validation and freezing for a config given as a value (tests, `shoal dev`). */
export const validateConfig = <S extends TObject>(
  schema: S,
  value: unknown,
  origin = 'configuration',
): Readonly<Static<S>> => {
  const withDefaults = Value.Default(schema, Value.Clone(value ?? {}));
  const converted = Value.Convert(schema, withDefaults);
  if (!Value.Check(schema, converted)) {
    const problems = [...Value.Errors(schema, converted)]
      .slice(0, 5)
      .map((e) => `${e.path.replace(/^\//, '').replace(/\//g, '.') || '(root)'}: ${e.message}`);
    throw new ShoalError('CONFIG_INVALID', `invalid ${origin}: ${problems.join('; ')}`, {
      detail: { problems },
    });
  }
  return deepFreeze(converted as Static<S>);
};

const envName = (path: string[]) =>
  `SHOAL_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;

/** Lists of objects and maps (namespace routes, headers) are set in the config file only. */
const fromEnv = (node: TSchema): boolean =>
  !(node.type === 'array' && (node.items as TSchema | undefined)?.type === 'object') &&
  !(node.type === 'object' && node.patternProperties !== undefined);

const envOverrides = (schema: TSchema, env: NodeJS.ProcessEnv): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  const walk = (node: TSchema, path: string[]) => {
    if (node.type === 'object' && node.properties) {
      for (const [key, child] of Object.entries(node.properties as Record<string, TSchema>)) {
        walk(child, [...path, key]);
      }
      return;
    }
    if (!fromEnv(node)) return;
    const raw = env[envName(path)];
    if (raw === undefined) return;
    let target = out;
    for (const key of path.slice(0, -1)) {
      target = (target[key] ??= {}) as Record<string, unknown>;
    }
    target[path[path.length - 1] as string] =
      node.type === 'array'
        ? raw
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : raw;
  };
  walk(schema, []);
  return out;
};

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export const deepMerge = (
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    out[key] =
      isPlainObject(value) && isPlainObject(out[key])
        ? deepMerge(out[key] as Record<string, unknown>, value)
        : value;
  }
  return out;
};

const deepFreeze = <T>(value: T): T => {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
};

/** Every environment variable a schema reads, with its default, for `--help` and the README. */
export const describeEnv = (schema: TSchema): Array<{ name: string; default: unknown }> => {
  const out: Array<{ name: string; default: unknown }> = [];
  const walk = (node: TSchema, path: string[]) => {
    if (node.type === 'object' && node.properties) {
      for (const [key, child] of Object.entries(node.properties as Record<string, TSchema>)) {
        walk(child, [...path, key]);
      }
      return;
    }
    if (fromEnv(node)) out.push({ name: envName(path), default: node.default });
  };
  walk(schema, []);
  return out;
};
