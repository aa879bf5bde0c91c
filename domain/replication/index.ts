export * from './events';
export * from './patterns';
export * from './backoff';
export * from './rules';
export * from './lag';
export * from './lease';
