export * from './announcer';
export * from './filePieceSource';
export * from './swarmHost';
