export * from './config';
export * from './events';
export * from './pieceSelection';
export * from './pieceSource';
export * from './scheduler';
