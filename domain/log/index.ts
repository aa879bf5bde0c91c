export * from './event';
export * from './eventLog';
export * from './registry';
export * from './validate';
