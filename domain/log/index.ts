export * from './event';
export * from './eventLog';
export * from './eventTypes';
export * from './validate';
