import type { TSchema } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import type { EventMetadata, ShoalEvent } from './event';
import type { EventData, EventType } from './eventTypes';
import { eventDefinitions, isEventType } from './eventTypes';

const Envelope = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 128 }),
    type: Type.String({ minLength: 1, maxLength: 128 }),
    version: Type.Integer({ minimum: 1 }),
    stream: Type.String({ minLength: 1, maxLength: 1024 }),
    data: Type.Object({}),
    metadata: Type.Object(
      {
        at: Type.String({ minLength: 1, maxLength: 64 }),
        actor: Type.String({ maxLength: 256 }),
        client: Type.Optional(Type.String({ maxLength: 256 })),
        cluster: Type.String({ maxLength: 256 }),
        correlationId: Type.Optional(Type.String({ maxLength: 128 })),
        causationId: Type.Optional(Type.String({ maxLength: 128 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const envelopeCheck = TypeCompiler.Compile(Envelope);
// type → version → compiled check: two lookups, no key string built per event.
const dataChecks = new Map<string, Map<number, TypeCheck<TSchema>>>();
const dataCheck = (type: EventType, version: number): TypeCheck<TSchema> | undefined => {
  let byVersion = dataChecks.get(type);
  if (byVersion === undefined) {
    byVersion = new Map();
    dataChecks.set(type, byVersion);
  }
  let check = byVersion.get(version);
  if (check === undefined) {
    const schema = (eventDefinitions[type].schemas as Record<number, TSchema>)[version];
    if (schema === undefined) return undefined;
    check = TypeCompiler.Compile(schema);
    byVersion.set(version, check);
  }
  return check;
};

const invalid = (message: string, field: string, event: unknown) =>
  fail(
    new ShoalError('EVENT_INVALID', message, {
      detail: { field, type: (event as { type?: unknown } | null)?.type },
    }),
  );

/** JSON-pointer path `/data/digest` as the dotted field name `data.digest`. */
const fieldOf = (path: string) => path.replace(/^\//, '').replace(/\//g, '.') || '(event)';

/**
 * Checks an event against the envelope, its type's schema at its version, and the stream its
 * data implies. Every adapter calls this on append, so a bad event never reaches a log.
 * The error names the first offending field: `TagPushed.data.digest: …`.
 */
export const validateEvent = (event: unknown): Result<ShoalEvent> => {
  if (!envelopeCheck.Check(event)) {
    const first = envelopeCheck.Errors(event).First();
    const field = first ? fieldOf(first.path) : '(event)';
    return invalid(`event.${field}: ${first?.message ?? 'invalid'}`, field, event);
  }
  const { type, version, data, stream } = event;
  if (!isEventType(type)) return invalid(`unknown event type "${type}"`, 'type', event);
  const check = dataCheck(type, version);
  if (check === undefined) {
    return invalid(`${type}: unknown version ${version}`, 'version', event);
  }
  if (!check.Check(data)) {
    const first = check.Errors(data).First();
    const field = `data.${fieldOf(first?.path ?? '')}`;
    return invalid(`${type}.${field}: ${first?.message ?? 'invalid'}`, field, event);
  }
  const want = (eventDefinitions[type].stream as (d: unknown) => string)(data);
  if (stream !== want) {
    return invalid(`${type}.stream: want "${want}", got "${stream}"`, 'stream', event);
  }
  return ok(event as ShoalEvent);
};

/** Builds a valid event of the current version; the stream is derived from the data. */
export const makeEvent = <T extends EventType>(
  type: T,
  data: EventData<T>,
  envelope: { id: string; metadata: EventMetadata },
): ShoalEvent<T> => {
  const definition = eventDefinitions[type];
  return {
    id: envelope.id,
    type,
    version: definition.version,
    stream: (definition.stream as (d: EventData<T>) => string)(data),
    data,
    metadata: envelope.metadata,
  } as ShoalEvent<T>;
};
