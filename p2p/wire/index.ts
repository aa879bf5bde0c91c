export * from './bitfield';
export * from './codec';
export * from './connection';
export * from './constants';
export * from './duplexPair';
export * from './framer';
export * from './violations';
