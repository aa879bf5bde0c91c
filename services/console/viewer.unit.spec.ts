import type { Subject } from '../shared/security/subject';
import type { RepositoryAccess } from './viewer';
import { mayPullAny, viewerFor } from './viewer';

// The console's viewer from an authenticated subject and the registry's policies: named as
// the audit trail names the subject, and asking the policy once per repository per request.
describe('viewerFor', () => {
  const alice: Subject = { kind: 'user', name: 'alice', groups: ['team-a'], address: '10.0.0.1' };
  const asked: string[] = [];
  const access: RepositoryAccess = {
    mayPull: (subject, repo) => {
      asked.push(repo);
      return subject.kind === 'user' && subject.groups.some((g) => repo.startsWith(`${g}/`));
    },
    seesCluster: (subject) => subject.kind === 'service',
  };

  it('is named by the actor of the subject and decided by the policy', () => {
    const viewer = viewerFor(alice, access);
    expect(viewer.actor).toBe('user:alice');
    expect(viewer.seesCluster).toBe(false);
    expect(viewer.mayPull('team-a/app')).toBe(true);
    expect(viewer.mayPull('team-b/app')).toBe(false);
    expect(mayPullAny(viewer, ['team-b/app', 'team-a/base'])).toBe(true);
    expect(mayPullAny(viewer, ['team-b/app'])).toBe(false);
  });

  it('asks the policy once per repository', () => {
    asked.length = 0;
    const viewer = viewerFor(alice, access);
    for (let i = 0; i < 3; i += 1) viewer.mayPull('team-a/app');
    expect(asked).toEqual(['team-a/app']);
  });

  it('lets services of the cluster see everything cluster-wide', () => {
    const origin: Subject = { kind: 'service', role: 'origin', name: '1', address: '10.0.0.2' };
    const viewer = viewerFor(origin, access);
    expect(viewer.actor).toBe('service:origin/1');
    expect(viewer.seesCluster).toBe(true);
    expect(viewer.mayPull('team-a/app')).toBe(false);
  });
});
