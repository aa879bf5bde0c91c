import { testSecurityOn } from '../fixtures/security';
import { faultKinds } from './history';
import { formatReport, runSoak } from './soak';

// The short soak `npm test` runs (in its e2e pass with security on; the pass with it off skips
// it, saying so: the soak's fleet runs with cluster security, and once is enough for CI time): the whole fleet as separate processes (3 Kafka nodes, S3,
// two clusters), 2.5 minutes of load with a fault every 3–6 s (every kind at least once, with
// a fixed seed), then the checker over the history. `npm run chaos -- --minutes 30` is the
// long one (its figures are in the README's reliability section).

const log = (line: string) => process.stderr.write(`[soak] ${line}\n`);

if (!testSecurityOn) {
  process.stderr.write(
    '\n!!! chaosSoak.e2e: NOT RUN in the SHOAL_TEST_SECURITY=off pass: it ran in the pass with ' +
      'security on (npm test runs it once)\n',
  );
}

(testSecurityOn ? describe : describe.skip)('chaos soak (short, fixed seed)', () => {
  it('loses nothing, returns no wrong bytes and no stale reads under every kind of fault', async () => {
    const report = await runSoak({
      minutes: 2.5,
      seed: 7,
      workers: 4,
      rate: 3,
      agents: 8,
      gapMs: [3000, 6000],
      convergeMs: 120_000,
      healMs: 120_000,
      keep: false,
      log,
    });
    process.stdout.write(`${formatReport(report)}\n`);
    const notInjected = faultKinds.filter((kind) => report.faults[kind].injected === 0);
    if (notInjected.length > 0) {
      // Only where the machine cannot (not root: no tmpfs, no iptables): said loudly.
      process.stderr.write(
        `\n!!! soak: faults NOT injected: ${notInjected
          .map((kind) => `${kind} (${report.faults[kind].why ?? 'never drawn'})`)
          .join(', ')}\n`,
      );
    }
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ lost: 0, corrupt: 0, stale: 0, missingReferrers: 0 });
    expect(report.underReplicated).toBe(0);
    expect(report.convergedSeconds).not.toBeNull();
    expect(Object.values(report.replay)).toEqual([true, true, true]);
    // Every kind was drawn; each was injected unless the machine cannot (said above): a fault
    // that failed while being injected fails the soak.
    for (const kind of faultKinds) {
      const f = report.faults[kind];
      expect({ kind, drawn: f.injected + f.skipped > 0 }).toEqual({ kind, drawn: true });
      expect({ kind, failed: f.why?.startsWith('failed') ?? false }).toEqual({
        kind,
        failed: false,
      });
    }
    // Operations of every kind succeeded (a soak whose load never got through proves nothing).
    for (const kind of ['push', 'index', 'sign', 'move', 'read', 'pull']) {
      expect({ kind, ok: (report.operations.byKind[kind]?.ok ?? 0) > 0 }).toEqual({
        kind,
        ok: true,
      });
    }
    expect(report.availability.overall).toBeGreaterThan(0.5);
  }, 900_000);
});
