export * from './digest';
export * from './repoName';
export * from './tag';
export * from './reference';
export * from './schemas';
export * from './glob';
