export { BufferPool, sharedPool } from './bufferPool';
