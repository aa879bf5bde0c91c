export * from './pieceStore';
