export * from './keyedMinHeap';
