export type { FilesystemBlobStoreOptions } from './filesystemBlobStore';
export { createFilesystemBlobStore } from './filesystemBlobStore';
