export * from './fileReads';
export * from './pieceStore';
export * from './pieceWriter';
