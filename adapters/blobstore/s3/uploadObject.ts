import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

export type UploadTarget = {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly partSize: number;
  readonly queueSize: number;
  /** Ask for CRC32 part checksums (the `when_supported` setting). */
  readonly crc32: boolean;
};

/** The first part's buffer starts this small and doubles, so small bodies take little memory. */
const firstBufferBytes = 64 * 1024;

/**
 * Streams `source` into an object: one PutObject when it ends within the first part, else a
 * multipart upload, which is aborted when anything fails (the body, a part, the completion),
 * so the object appears only when CompleteMultipartUpload succeeds.
 *
 * Memory is bounded and does not wait for the GC: at most `queueSize` parts are in flight
 * and one is being filled, in part-sized buffers reused from part to part. The body is read
 * only into the filling buffer, so a slow backend slows the reading of the body.
 */
export const uploadObject = async (
  target: UploadTarget,
  source: AsyncIterable<Uint8Array>,
): Promise<void> => {
  const { client, bucket: Bucket, key: Key, partSize, queueSize, crc32 } = target;
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const spare: Buffer[] = [];
  const completed: CompletedPart[] = [];
  let failed: { error: unknown } | undefined;
  let uploadId: string | undefined;
  let parts = 0;
  let buffer: Buffer = Buffer.allocUnsafe(Math.min(partSize, firstBufferBytes));
  let length = 0;

  const sendPart = async () => {
    if (uploadId === undefined) {
      const created = await client.send(
        new CreateMultipartUploadCommand({
          Bucket,
          Key,
          ...(crc32 && { ChecksumAlgorithm: 'CRC32' }),
        }),
        { abortSignal: abort.signal },
      );
      if (created.UploadId === undefined) throw new Error('CreateMultipartUpload: no UploadId');
      uploadId = created.UploadId;
    }
    const PartNumber = ++parts;
    const part = buffer;
    const sending: Promise<void> = client
      .send(
        new UploadPartCommand({
          Bucket,
          Key,
          UploadId: uploadId,
          PartNumber,
          Body: part.subarray(0, length),
          ContentLength: length,
          ...(crc32 && { ChecksumAlgorithm: 'CRC32' }),
        }),
        { abortSignal: abort.signal },
      )
      .then(
        ({ ETag, ChecksumCRC32 }) => {
          completed.push({
            PartNumber,
            ETag,
            ...(ChecksumCRC32 !== undefined && { ChecksumCRC32 }),
          });
        },
        (error: unknown) => {
          // The first failure stops the other parts and the reading of the body.
          failed ??= { error };
          abort.abort();
        },
      )
      .finally(() => {
        inFlight.delete(sending);
        spare.push(part);
      });
    inFlight.add(sending);
  };

  const nextBuffer = async () => {
    while (inFlight.size >= queueSize) await Promise.race(inFlight);
    if (failed !== undefined) throw failed.error;
    buffer = spare.pop() ?? Buffer.allocUnsafe(partSize);
    length = 0;
  };

  try {
    for await (const chunk of source) {
      for (let offset = 0; offset < chunk.length;) {
        if (length === buffer.length) {
          if (buffer.length < partSize) {
            const grown = Buffer.allocUnsafe(Math.min(partSize, buffer.length * 2));
            buffer.copy(grown, 0, 0, length);
            buffer = grown;
          } else {
            // A full part and more bytes to come: this is a multipart upload.
            await sendPart();
            await nextBuffer();
          }
        }
        const n = Math.min(chunk.length - offset, buffer.length - length);
        buffer.set(chunk.subarray(offset, offset + n), length);
        length += n;
        offset += n;
      }
      if (failed !== undefined) throw failed.error;
    }
    if (parts === 0) {
      const body = buffer.subarray(0, length);
      await client.send(new PutObjectCommand({ Bucket, Key, Body: body, ContentLength: length }));
      return;
    }
    await sendPart();
    while (inFlight.size > 0) await Promise.race(inFlight);
    if (failed !== undefined) throw failed.error;
    completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId: uploadId,
        MultipartUpload: { Parts: completed },
      }),
    );
  } catch (error) {
    abort.abort();
    await Promise.allSettled([...inFlight]);
    if (uploadId !== undefined) {
      // Best effort: parts of an upload never completed are never visible; a bucket
      // lifecycle rule (AbortIncompleteMultipartUpload) reclaims what this cannot.
      await client
        .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }))
        .catch(() => undefined);
    }
    throw error;
  }
};
