import type { OriginJoined, OriginLeft } from './events';

/** A member of the ring: its id, where it is reached, and the position of its `OriginJoined`. */
export type RingMember = {
  readonly id: string;
  readonly address: string;
  readonly position: number;
};

type RingEvent =
  | { readonly type: 'OriginJoined'; readonly position: number; readonly data: OriginJoined }
  | { readonly type: 'OriginLeft'; readonly position: number; readonly data: OriginLeft };

/**
 * The ring's members from the ring stream's events, oldest first: a member joins (or moves to
 * a new address) with `OriginJoined` and is gone with `OriginLeft`. Other events are ignored.
 */
export const ringMembers = (
  events: ReadonlyArray<{
    readonly type: string;
    readonly position: number;
    readonly data: unknown;
  }>,
): RingMember[] => {
  const members = new Map<string, RingMember>();
  for (const event of events as ReadonlyArray<RingEvent>) {
    if (event.type === 'OriginJoined') {
      members.set(event.data.id, {
        id: event.data.id,
        address: event.data.address,
        position: event.position,
      });
    } else if (event.type === 'OriginLeft') {
      members.delete(event.data.id);
    }
  }
  return [...members.values()];
};
