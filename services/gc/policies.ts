import { randomBytes } from 'node:crypto';
import type { EventLog, Position, ProjectionStore, RetentionInput } from '../../domain';
import {
  ShoalError,
  orThrow,
  parseNamespace,
  parseRetentionInput,
  ruleIdFor,
  truncate,
} from '../../domain';
import type { QuotaDoc, RetentionRuleDoc, UsageDoc } from '../../projections';
import {
  policiesProjection,
  policyPartitions,
  referencesKeys,
  referencesProjection,
} from '../../projections';
import type { WriterContext } from '../shared/events';
import { newEvent } from '../shared/events';
import { listAllOf } from '../shared/listPartition';

/** A namespace's quota beside what it uses now. */
export type QuotaView = {
  readonly namespace: string;
  readonly bytes: number;
  readonly used: number;
  readonly blobs: number;
  readonly position: Position;
};

/**
 * Retention rules and quotas: events on the log, read back from the `policies` and
 * `references` projections (the caller keeps them; `waitFor` waits until they applied a
 * position, so a write is seen by the next read).
 */
export const createPolicyService = (deps: {
  log: EventLog;
  store: ProjectionStore;
  writer: WriterContext;
  waitFor: (position: Position) => Promise<void>;
}) => {
  const { log, store, writer, waitFor } = deps;
  const policies = policiesProjection.name;

  const rules = () => listAllOf<RetentionRuleDoc>(store, policies, policyPartitions.retention);

  const findRule = async (idOrName: string): Promise<RetentionRuleDoc> => {
    const all = (await rules()).map((r) => r.doc);
    const found =
      all.find((r) => r.id === idOrName) ??
      all.find((r) => r.removedPosition === undefined && r.name === idOrName);
    if (found === undefined) {
      throw new ShoalError('NAME_UNKNOWN', `no retention rule "${truncate(idOrName)}"`, {
        detail: { rule: truncate(idOrName) },
      });
    }
    return found;
  };

  const written = async (position: Position) => {
    await waitFor(position);
    return position;
  };

  return {
    addRule: async (input: RetentionInput) => {
      const data = orThrow(parseRetentionInput(input));
      if (data.name !== undefined) {
        const clash = (await rules()).some(
          (r) => r.doc.removedPosition === undefined && r.doc.name === data.name,
        );
        if (clash) {
          throw new ShoalError('PARAMETER_INVALID', `a retention rule is named "${data.name}"`);
        }
      }
      const id = ruleIdFor(data.name ?? 'retention', randomBytes(4).toString('hex'));
      const position = await written(
        await log.append([newEvent(writer, 'RetentionRuleAdded', { id, ...data })], {
          expectedVersion: 'no-stream',
        }),
      );
      return { rule: { id, ...data, addedPosition: position } as RetentionRuleDoc, position };
    },

    listRules: async (options: { all?: boolean } = {}) =>
      (await rules())
        .map((r) => r.doc)
        .filter((r) => options.all === true || r.removedPosition === undefined),

    removeRule: async (idOrName: string) => {
      const rule = await findRule(idOrName);
      if (rule.removedPosition !== undefined) {
        return { id: rule.id, position: rule.removedPosition };
      }
      const position = await written(
        await log.append([newEvent(writer, 'RetentionRuleRemoved', { id: rule.id })]),
      );
      return { id: rule.id, position };
    },

    setQuota: async (namespace: string, bytes: number) => {
      const ns = orThrow(parseNamespace(namespace));
      if (!Number.isSafeInteger(bytes) || bytes < 0) {
        throw new ShoalError('PARAMETER_INVALID', 'a quota is a number of bytes ≥ 0');
      }
      const position = await written(
        await log.append([newEvent(writer, 'QuotaSet', { namespace: ns, bytes })]),
      );
      return { namespace: ns, bytes, position };
    },

    removeQuota: async (namespace: string) => {
      const ns = orThrow(parseNamespace(namespace));
      const doc = await store.get<QuotaDoc>(policies, {
        partition: policyPartitions.quota,
        id: ns,
      });
      if (doc === undefined) {
        throw new ShoalError('NAME_UNKNOWN', `namespace ${ns} has no quota`, {
          detail: { namespace: ns },
        });
      }
      const position = await written(
        await log.append([newEvent(writer, 'QuotaRemoved', { namespace: ns })]),
      );
      return { namespace: ns, position };
    },

    /** Every quota with its namespace's usage. */
    listQuotas: async (): Promise<QuotaView[]> => {
      const quotas = await listAllOf<QuotaDoc>(store, policies, policyPartitions.quota);
      return Promise.all(
        quotas.map(async ({ id, doc }) => {
          const usage = await store.get<UsageDoc>(
            referencesProjection.name,
            referencesKeys.usage(id),
          );
          return {
            namespace: id,
            bytes: doc.bytes,
            used: usage?.bytes ?? 0,
            blobs: usage?.blobs ?? 0,
            position: doc.position,
          };
        }),
      );
    },
  };
};

export type PolicyService = ReturnType<typeof createPolicyService>;
