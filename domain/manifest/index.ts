export * from './events';
export * from './mediaTypes';
export * from './parse';
