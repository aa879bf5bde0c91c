import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ShoalError } from '../../../domain';
import type { LogLevel } from '../../shared/logger';
import { note } from '../output';
import type { AgentReadyMessage } from './agent';

/** Most agents `shoal dev --agents` starts (each child is a Node process of its own). */
export const maxDevAgents = 256;

const maxPort = 65535;

/**
 * Ports of the dev cluster's agent `n` (1-based) from the port base P. Agent 1 runs in the
 * dev process with registry P+1 and peer port P+6 (as without `--agents`); agent n ≥ 2 is a
 * child process with registry P+2n+6 and peer port P+2n+7 — agent 2 on P+10/P+11, agent 3 on
 * P+12/P+13, … — so P+7…P+9 stay free. With port base 0 the system picks every port.
 */
export const devAgentPorts = (base: number, n: number): { registry: number; peer: number } => {
  if (base === 0) return { registry: 0, peer: 0 };
  if (n === 1) return { registry: base + 1, peer: base + 6 };
  return { registry: base + 2 * n + 6, peer: base + 2 * n + 7 };
};

/** Ports a dev cluster with `agents` agents uses from its base: P … P + span - 1. */
export const devPortSpan = (agents: number): number =>
  agents > 1 ? devAgentPorts(0, agents).peer + 1 : 7;

/** The role behind a port of the dev cluster (for a message about a busy port). */
export const devPortRole = (base: number, agents: number, port: number): string | undefined => {
  if (base === 0) return undefined;
  const offset = port - base;
  const fixed = ['proxy', 'agent 1', 'build-index', 'origin', 'tracker', 'origin seeder'];
  if (offset >= 0 && offset < fixed.length) return `${fixed[offset]} (port P+${offset})`;
  if (offset === 6) return 'agent 1 peer port (P+6)';
  for (let n = 2; n <= agents; n += 1) {
    const ports = devAgentPorts(base, n);
    if (port === ports.registry) return `agent ${n} (port P+${offset})`;
    if (port === ports.peer) return `agent ${n} peer port (P+${offset})`;
  }
  return undefined;
};

/** What to do about a busy port of the dev cluster: another base, far enough from this one. */
export const devPortRemedy = (base: number, agents: number): string => {
  const span = devPortSpan(agents);
  const next = base + span;
  return (
    `Another program (or another dev cluster) has it: choose another --port-base. This ` +
    `cluster (--port-base ${base}${agents > 1 ? ` --agents ${agents}` : ''}) uses ports ` +
    `${base}–${base + span - 1}, so another cluster's base must be at least ${span} away` +
    `${next + span - 1 <= maxPort ? ` (e.g. --port-base ${next})` : ''}; ` +
    '--port-base 0 lets the system pick free ports.'
  );
};

/** `--agents N`: an integer from 1 to {@link maxDevAgents}. */
export const parseAgentCount = (text: string): number => {
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1 || count > maxDevAgents) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `invalid --agents "${text}": want an integer from 1 to ${maxDevAgents}`,
    );
  }
  return count;
};

/** Refuses a port base whose cluster (with `agents` agents) would need ports above 65535. */
export const checkDevPorts = (base: number, agents: number): void => {
  if (base === 0) return;
  const highest = agents > 1 ? devAgentPorts(base, agents).peer : base + 6;
  if (highest <= maxPort) return;
  throw new ShoalError(
    'CONFIG_INVALID',
    `--port-base ${base} with --agents ${agents} needs ports up to ${highest}, above ` +
      `${maxPort} (agent n ≥ 2 uses P+2n+6 and P+2n+7): lower --port-base or --agents, or use ` +
      '--port-base 0 for ports the system picks',
  );
};

export type DevAgentProcess = {
  readonly n: number;
  readonly configPath: string;
  readonly pid: number | undefined;
  /** Resolves with the registry URL once the child listens; rejects if it exits first. */
  readonly ready: Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
  readonly stop: () => Promise<void>;
};

/** The child's environment: no `SHOAL_*` overrides, like the in-process agent (`env: {}`). */
const childEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('SHOAL_')));

/** The CLI this process runs (`dist/services/cli/main.js`), for `shoal agent` children. */
const cliEntry = (): string => process.argv[1] ?? join(__dirname, '..', 'main.js');

/**
 * Starts agent `n` of the dev cluster as a child `shoal agent --exit-with-parent` process:
 * writes its config to `<dataDir>/agents/agent-<n>/agent.yaml` (its cache lives in
 * `<dataDir>/agent-<n>/`, beside the in-process agent's `agent-1/`), pointed at the dev
 * tracker, build-index and proxy. The child shares this process's stdout and stderr (its JSON
 * logs carry `"agent":"<n>"`), runs in its own process group (a terminal's Ctrl-C reaches
 * only dev, which stops it), reports readiness over IPC, and exits by itself when dev dies,
 * even by SIGKILL (the IPC channel closes).
 */
export const startDevAgentProcess = (options: {
  n: number;
  /** Absolute path of the data directory (it exists and is Shoal's). */
  dataDir: string;
  host: string;
  ports: { registry: number; peer: number };
  trackerUrl: string;
  buildIndexUrl: string;
  proxyUrl: string;
  logLevel: LogLevel;
  /** More of the agent's config (`shoal dev --secure`: its tls and security blocks). */
  extraConfig?: Record<string, unknown>;
  readyTimeoutMs?: number;
  graceMs?: number;
}): DevAgentProcess => {
  const { n } = options;
  const dir = join(options.dataDir, 'agents', `agent-${n}`);
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'agent.yaml');
  // Only what differs from the agent defaults, as the in-process agent's overrides.
  const config = {
    id: String(n),
    dataDir: options.dataDir,
    listen: { host: options.host, port: options.ports.registry },
    p2p: { port: options.ports.peer },
    trackers: { urls: [options.trackerUrl] },
    buildIndex: { url: options.buildIndexUrl },
    proxy: { url: options.proxyUrl },
    logLevel: options.logLevel,
    // Open, as the whole dev cluster (see its banner), unless `--secure` says otherwise.
    security: { mode: 'open' },
    ...options.extraConfig,
  };
  writeFileSync(
    configPath,
    `# Written by \`shoal dev --agents\` at each start: agent ${n} of the dev cluster.\n` +
      stringify(config),
  );
  const child = spawn(
    process.execPath,
    [cliEntry(), 'agent', '--config', configPath, '--exit-with-parent'],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: childEnv(), detached: true },
  );
  let stopping = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A child that could not be spawned never exits.
    child.once('error', () => child.pid === undefined && resolve());
  });
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ShoalError('SERVICE_UNAVAILABLE', `agent ${n} did not start in time`));
    }, options.readyTimeoutMs ?? 60_000);
    child.on('message', (message: Partial<AgentReadyMessage>) => {
      if (message?.type !== 'shoal-agent-ready' || typeof message.url !== 'string') return;
      clearTimeout(timer);
      resolve(message.url);
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new ShoalError('SERVICE_UNAVAILABLE', `cannot start agent ${n}: ${error.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const how = code ?? signal;
      reject(
        new ShoalError('SERVICE_UNAVAILABLE', `agent ${n} exited (${how}) before it listened`),
      );
      if (!stopping) note(`agent ${n} (pid ${child.pid}) exited (${how})`);
    });
  });
  ready.catch(() => undefined);
  return {
    n,
    configPath,
    pid: child.pid,
    ready,
    stop: async () => {
      stopping = true;
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const killer = setTimeout(() => child.kill('SIGKILL'), options.graceMs ?? 10_000);
      child.kill('SIGTERM');
      await exited;
      clearTimeout(killer);
    },
  };
};
