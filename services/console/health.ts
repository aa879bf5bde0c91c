import type { Clock } from '../../domain';
import { createJsonClient } from '../shared/httpClient';
import type { ClientIdentity } from '../shared/security/clientIdentity';

/** A service the console watches, by the role it plays and a name within it. */
export type WatchedService = { readonly role: string; readonly name: string; readonly url: string };

export type ServiceHealth = WatchedService & {
  readonly ok: boolean;
  /** Why it is not ok: its own reason (503), or why it could not be reached. */
  readonly reason?: string;
  /** Since when it has been in this state (ISO 8601). */
  readonly since: string;
  readonly checkedAt: string;
};

/**
 * Watches other services' `/health`: each check asks them all at once (bounded by the
 * timeout), and remembers since when each is up or down. `check` runs on demand; the live
 * feed calls it on a timer only while someone is watching.
 */
export const createHealthWatch = (deps: {
  services: readonly WatchedService[];
  clock: Clock;
  timeoutMs: number;
  identity?: ClientIdentity;
}) => {
  const options = {
    timeoutMs: deps.timeoutMs,
    ...(deps.identity !== undefined && { identity: deps.identity }),
  };
  const clients = new Map(deps.services.map((s) => [s.url, createJsonClient(s.url, options)]));
  let last: ServiceHealth[] = [];
  let running: Promise<ServiceHealth[]> | undefined;

  const probe = async (service: WatchedService) => {
    const call = clients.get(service.url) as ReturnType<typeof createJsonClient>;
    try {
      await call('GET', '/health');
      return { ok: true };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  };

  const check = async (): Promise<ServiceHealth[]> => {
    const now = new Date(deps.clock.now()).toISOString();
    const results = await Promise.all(deps.services.map(probe));
    last = deps.services.map((service, i) => {
      const result = results[i] as { ok: boolean; reason?: string };
      const before = last.find((h) => h.url === service.url && h.role === service.role);
      return {
        ...service,
        ok: result.ok,
        ...(result.reason !== undefined && { reason: result.reason }),
        since: before !== undefined && before.ok === result.ok ? before.since : now,
        checkedAt: now,
      };
    });
    return last;
  };

  return {
    /** Checks every service now (concurrent calls share one check). */
    check: (): Promise<ServiceHealth[]> => {
      running ??= check().finally(() => (running = undefined));
      return running;
    },
    /** The last check's answers (empty before the first). */
    last: (): ServiceHealth[] => last,
  };
};

export type HealthWatch = ReturnType<typeof createHealthWatch>;
