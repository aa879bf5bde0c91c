import type { RingView } from './ringView';

/** A probe that has not answered in this long counts as not heard from. */
const probeTimeoutMs = 5000;

/**
 * Which ring members this origin has not heard from for `lostAfterMs`: each check asks every
 * other member for the ring (`GET /internal/ring`, bounded by a short timeout), and a member
 * silent for longer than the grace is lost — down, frozen or cut off, but not left. Healing
 * then treats it as absent when it places copies, so its blobs get R copies among the others;
 * it is never removed from the ring (only `shoal origin leave` does that), so when it answers
 * again the extra copies are released. `lostAfterMs` 0: nobody is ever lost.
 */
export const createMemberLiveness = (deps: {
  ring: RingView;
  selfId: string;
  probe: (address: string) => Promise<unknown>;
  lostAfterMs: number;
}) => {
  const started = Date.now();
  const lastSeen = new Map<string, number>();
  const heard = (address: string) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), probeTimeoutMs);
      deps.probe(address).then(
        () => {
          clearTimeout(timer);
          resolve(true);
        },
        () => {
          clearTimeout(timer);
          resolve(false);
        },
      );
    });
  return {
    /** Asks every other member once, at the same time. */
    check: async (): Promise<void> => {
      if (deps.lostAfterMs === 0) return;
      const others = (await deps.ring.members()).filter((m) => m.id !== deps.selfId);
      await Promise.all(
        others.map(async (m) => {
          if (await heard(m.address)) lastSeen.set(m.id, Date.now());
        }),
      );
    },
    /** Of `ids`, those not heard from for the grace (never this origin). */
    lost: (ids: readonly string[]): string[] =>
      deps.lostAfterMs === 0
        ? []
        : ids.filter(
            (id) =>
              id !== deps.selfId && Date.now() - (lastSeen.get(id) ?? started) > deps.lostAfterMs,
          ),
  };
};

export type MemberLiveness = ReturnType<typeof createMemberLiveness>;
