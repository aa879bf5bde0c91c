export * from './events';
export * from './quota';
