export type { S3BackendConfig, S3BlobStoreConfig, S3BlobStoreDeps } from './s3BlobStore';
export {
  S3BackendConfigSchema,
  createS3BlobStore,
  createS3Client,
  s3MinPartSizeBytes,
} from './s3BlobStore';
