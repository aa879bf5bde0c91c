export * from './errors';
export * from './result';
export type { Clock } from './clock';
