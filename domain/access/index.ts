export * from './actions';
export * from './policies';
