import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';

const OriginId = Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9._:-]+$' });

export const OriginJoinedV1 = Type.Object(
  { id: OriginId, address: Type.String({ minLength: 1, maxLength: 2048 }) },
  { additionalProperties: false },
);
export type OriginJoined = Static<typeof OriginJoinedV1>;

export const OriginLeftV1 = Type.Object({ id: OriginId }, { additionalProperties: false });
export type OriginLeft = Static<typeof OriginLeftV1>;

export const ringStream = 'ring/origins';
