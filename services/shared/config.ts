import { readFileSync } from 'node:fs';
import type { Static, TObject, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { ShoalError } from '../../domain';
import { explainConfigErrors } from './configErrors';
import { configKeys, nodeAt, strictSchema } from './configKeys';

/**
 * Loads one role's configuration: defaults from the schema, then the YAML file, then
 * environment overrides, then validation. This is the only place that reads `SHOAL_*`
 * variables. The result is frozen: modules receive it, they never re-read the environment.
 *
 * Environment names are the config path in upper snake case after `SHOAL_` (`configKeys`):
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
  const env = envOverrides(schema, sources.env ?? process.env);
  const merged = deepMerge(
    deepMerge(fromFile as Record<string, unknown>, env.values),
    sources.overrides ?? {},
  );
  return validateConfig(
    schema,
    merged,
    sources.file === undefined ? 'configuration' : `config file ${sources.file}`,
    (path) => env.sources.get(path.join('.')),
  );
};

/**
 * Defaults, validation and freezing for a config given as a value (tests, `shoal dev`).
 * Unknown keys are errors (every object of the schema is closed; free maps stay open), and
 * each problem names its key and what was probably meant.
 */
export const validateConfig = <S extends TObject>(
  schema: S,
  value: unknown,
  origin = 'configuration',
  sourceOf?: (path: readonly string[]) => string | undefined,
): Readonly<Static<S>> => {
  const strict = strictOf(schema);
  const withDefaults = Value.Default(strict, Value.Clone(value ?? {}));
  const converted = Value.Convert(strict, withDefaults);
  if (!Value.Check(strict, converted)) {
    const problems = explainConfigErrors(strict, Value.Errors(strict, converted), sourceOf).slice(
      0,
      8,
    );
    // One problem on the line, several one per line.
    const list = problems.length === 1 ? ` ${problems[0]}` : `\n  ${problems.join('\n  ')}\n`;
    throw new ShoalError('CONFIG_INVALID', `invalid ${origin}:${list}`, {
      detail: { problems },
    });
  }
  return deepFreeze(converted as Static<S>);
};

const strictSchemas = new WeakMap<TSchema, TSchema>();
const strictOf = <S extends TSchema>(schema: S): S => {
  let strict = strictSchemas.get(schema);
  if (strict === undefined) {
    strict = strictSchema(schema);
    strictSchemas.set(schema, strict);
  }
  return strict as S;
};

/** The variables that set values, by YAML path (dotted), for error messages. */
const envOverrides = (
  schema: TSchema,
  env: NodeJS.ProcessEnv,
): { values: Record<string, unknown>; sources: Map<string, string> } => {
  const values: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  for (const key of configKeys(schema)) {
    if (key.env === undefined) continue;
    const raw = env[key.env];
    if (raw === undefined) continue;
    sources.set(key.path.join('.'), key.env);
    let target = values;
    for (const segment of key.path.slice(0, -1)) {
      target = (target[segment] ??= {}) as Record<string, unknown>;
    }
    target[key.path[key.path.length - 1] as string] =
      nodeAt(schema, key.path)?.type === 'array'
        ? raw
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : raw;
  }
  return { values, sources };
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
