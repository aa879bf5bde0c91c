export * from './bitfield';
export * from './codec';
export * from './connection';
export * from './constants';
export * from './framer';
export * from './violations';
