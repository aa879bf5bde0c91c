export * from './bandwidth';
export * from './throttle';
export * from './tokenBucket';
