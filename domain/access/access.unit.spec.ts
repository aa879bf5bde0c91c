import type { AccessPolicies, Principal } from '.';
import {
  actionsOf,
  allowedActions,
  formatScope,
  isAdmin,
  mayAccess,
  noAccess,
  parseScope,
} from '.';

const alice: Principal = { kind: 'user', name: 'alice', groups: ['dev'] };
const bob: Principal = { kind: 'user', name: 'bob', groups: [] };
const carol: Principal = { kind: 'user', name: 'carol', groups: ['ops'] };
const nobody: Principal = { kind: 'anonymous' };

const policies: AccessPolicies = {
  policies: [
    { repositories: ['team/**'], groups: ['dev'], actions: ['pull', 'push'] },
    { repositories: ['team/app'], users: ['alice'], actions: ['overwrite'] },
    { repositories: ['shared/*'], users: ['*'], actions: ['pull'] },
  ],
  anonymous: { repositories: ['public/**'], actions: ['pull'] },
  admins: ['group:ops'],
};

describe('access policies', () => {
  it('given policies, a user may do the union of what the policies naming them allow', () => {
    expect([...allowedActions(policies, alice, 'team/app')].sort()).toEqual([
      'overwrite',
      'pull',
      'push',
    ]);
    expect([...allowedActions(policies, alice, 'team/web/x')].sort()).toEqual(['pull', 'push']);
    expect(mayAccess(policies, alice, 'team/app', 'delete')).toBe(false);
    expect(mayAccess(policies, bob, 'team/app', 'pull')).toBe(false);
  });

  it('users: ["*"] is every authenticated user, never anonymous', () => {
    expect(mayAccess(policies, bob, 'shared/base', 'pull')).toBe(true);
    expect(mayAccess(policies, nobody, 'shared/base', 'pull')).toBe(false);
    expect(mayAccess(policies, bob, 'shared/base/deeper', 'pull')).toBe(false);
  });

  it('the anonymous policy applies to everyone, and by default allows nothing', () => {
    expect(mayAccess(policies, nobody, 'public/x', 'pull')).toBe(true);
    expect(mayAccess(policies, nobody, 'public/x', 'push')).toBe(false);
    expect(mayAccess(policies, bob, 'public/x', 'pull')).toBe(true);
    expect(allowedActions(noAccess, nobody, 'public/x').size).toBe(0);
  });

  it('admins, by name or by group, may do everything everywhere', () => {
    expect(isAdmin(policies, carol)).toBe(true);
    expect(isAdmin(policies, alice)).toBe(false);
    expect(isAdmin(policies, nobody)).toBe(false);
    expect(allowedActions(policies, carol, 'anything/at/all').size).toBe(4);
    expect(isAdmin({ ...noAccess, admins: ['bob'] }, bob)).toBe(true);
  });
});

describe('token scopes', () => {
  it('parses repository and registry scopes, names with a port and resource classes', () => {
    expect(parseScope('repository:team/app:pull,push')).toEqual({
      ok: true,
      value: { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
    });
    expect(parseScope('registry:catalog:*')).toMatchObject({
      ok: true,
      value: { type: 'registry', name: 'catalog', actions: ['*'] },
    });
    expect(parseScope('repository(plugin):a/b:pull')).toMatchObject({
      ok: true,
      value: { type: 'repository', name: 'a/b' },
    });
    expect(parseScope('repository:localhost:5000/a:pull')).toMatchObject({
      ok: true,
      value: { name: 'localhost:5000/a' },
    });
    expect(formatScope({ type: 'repository', name: 'a', actions: ['pull', 'push'] })).toBe(
      'repository:a:pull,push',
    );
  });

  it('refuses what is not a scope', () => {
    for (const bad of ['', 'repository', 'repository:a', ':a:pull', 'repository::pull', 'x:a:p!']) {
      expect(parseScope(bad).ok).toBe(false);
    }
  });

  it('maps token actions to Shoal actions: * is every action, unknown ones are dropped', () => {
    expect([...actionsOf(['*'])].sort()).toEqual(['delete', 'overwrite', 'pull', 'push']);
    expect([...actionsOf(['pull', 'frobnicate'])]).toEqual(['pull']);
  });
});
