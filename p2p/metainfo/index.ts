export * from './metainfo';
export * from './metainfoBuilder';
