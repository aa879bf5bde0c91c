export * from './events';
export * from './ring';
