import type { Digest } from '../oci/digest';
import { parseDigest, truncate } from '../oci/digest';
import { ShoalError } from '../shared/errors';
import type { Result } from '../shared/result';
import { fail, ok } from '../shared/result';
import type { ManifestKind } from './mediaTypes';
import { manifestKinds, mediaTypes, normalizeMediaType } from './mediaTypes';

/** The registry's cap on a manifest's size (the OCI spec suggests registries accept 4 MiB). */
export const manifestMaxBytes = 4 * 1024 * 1024;

/** An OCI content descriptor, validated; unknown fields are kept in the stored bytes only. */
export type Descriptor = {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Foreign (non-distributable) content lives at these URLs, not in the registry. */
  readonly urls?: readonly string[];
  readonly platform?: Readonly<Record<string, unknown>>;
};

/** What the registry needs to know of a manifest to store it and answer about it. */
export type Manifest = {
  readonly mediaType: string;
  readonly kind: ManifestKind;
  readonly config?: Descriptor;
  readonly layers: readonly Descriptor[];
  /** Child manifests of an index. */
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  /** Declared `artifactType`, if any. */
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
};

/** The digests a manifest references that the registry must hold before it accepts it. */
export type ManifestReferences = {
  /** Config and layers, without foreign layers (those with `urls`). */
  readonly blobs: readonly Digest[];
  /** Child manifests of an index. */
  readonly manifests: readonly Digest[];
};

const invalid = (message: string, detail: Record<string, unknown> = {}) =>
  fail(new ShoalError('MANIFEST_INVALID', message, { detail }));

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const optionalString = (value: unknown, field: string): Result<string | undefined> => {
  if (value === undefined) return ok(undefined);
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) {
    return invalid(`${field} must be a non-empty string of at most 255 characters`, { field });
  }
  return ok(value);
};

const annotationsOf = (
  value: unknown,
  field: string,
): Result<Readonly<Record<string, string>> | undefined> => {
  if (value === undefined || value === null) return ok(undefined);
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    return invalid(`${field} must map strings to strings`, { field });
  }
  return ok(value as Record<string, string>);
};

/** Validates one descriptor (OCI image-spec "Descriptors"). */
export const parseDescriptor = (value: unknown, field: string): Result<Descriptor> => {
  if (!isObject(value)) return invalid(`${field} must be a descriptor object`, { field });
  const { mediaType, digest, size, artifactType, annotations, urls, platform } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0 || mediaType.length > 255) {
    return invalid(`${field}.mediaType must be a non-empty string`, { field });
  }
  if (typeof digest !== 'string') return invalid(`${field}.digest is missing`, { field });
  const parsedDigest = parseDigest(digest);
  if (!parsedDigest.ok) {
    return invalid(`${field}.digest: ${parsedDigest.error.message}`, {
      field,
      digest: truncate(digest),
    });
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    return invalid(`${field}.size must be a non-negative integer`, { field });
  }
  const type = optionalString(artifactType, `${field}.artifactType`);
  if (!type.ok) return type;
  const notes = annotationsOf(annotations, `${field}.annotations`);
  if (!notes.ok) return notes;
  if (
    urls !== undefined &&
    (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string' || u.length === 0))
  ) {
    return invalid(`${field}.urls must be a list of URLs`, { field });
  }
  if (platform !== undefined && !isObject(platform)) {
    return invalid(`${field}.platform must be an object`, { field });
  }
  return ok({
    mediaType,
    digest: parsedDigest.value,
    size,
    ...(type.value !== undefined && { artifactType: type.value }),
    ...(notes.value !== undefined && { annotations: notes.value }),
    ...(urls !== undefined && { urls: urls as string[] }),
    ...(platform !== undefined && { platform: platform as Record<string, unknown> }),
  });
};

const parseDescriptors = (value: unknown, field: string): Result<Descriptor[]> => {
  if (!Array.isArray(value)) return invalid(`${field} must be a list of descriptors`, { field });
  const out: Descriptor[] = [];
  for (const [i, item] of value.entries()) {
    const parsed = parseDescriptor(item, `${field}[${i}]`);
    if (!parsed.ok) return parsed;
    out.push(parsed.value);
  }
  return ok(out);
};

/**
 * Decides a manifest's media type from the request's `Content-Type` and the document's own
 * `mediaType` field. When both are known they must agree; a generic or missing header
 * defers to the field, and a document without either is recognised by its shape
 * (`manifests` → OCI index, `config` → OCI image manifest), as OCI allows `mediaType` to be
 * omitted.
 */
const mediaTypeOf = (contentType: string | undefined, doc: Json): Result<string> => {
  const header = normalizeMediaType(contentType);
  const field = doc['mediaType'];
  if (field !== undefined && typeof field !== 'string') {
    return invalid('mediaType must be a string', { field: 'mediaType' });
  }
  const schema1 = [mediaTypes.dockerSchema1, mediaTypes.dockerSchema1Signed] as string[];
  if ((header && schema1.includes(header)) || (field && schema1.includes(field))) {
    return invalid('Docker schema 1 manifests are not supported; push schema 2 or OCI', {
      mediaType: header ?? field,
    });
  }
  const headerKnown = header !== undefined && header in manifestKinds;
  if (headerKnown && field !== undefined && field !== header) {
    return invalid(`mediaType "${truncate(field)}" does not match Content-Type "${header}"`, {
      mediaType: truncate(field),
      contentType: header,
    });
  }
  if (headerKnown) return ok(header as string);
  if (field !== undefined) {
    if (!(field in manifestKinds)) {
      return invalid(`unsupported manifest media type "${truncate(field)}"`, {
        mediaType: truncate(field),
      });
    }
    return ok(field);
  }
  const generic = [undefined, 'application/json', 'application/octet-stream'];
  if (!generic.includes(header)) {
    return invalid(`unsupported manifest media type "${truncate(header ?? '')}"`, {
      mediaType: truncate(header ?? ''),
    });
  }
  if (Array.isArray(doc['manifests'])) return ok(mediaTypes.ociIndex);
  if (doc['config'] !== undefined) return ok(mediaTypes.ociManifest);
  return invalid('cannot tell the manifest type: no Content-Type, mediaType, config or manifests');
};

/**
 * Parses and validates a manifest as pushed (bytes as received, the request's Content-Type).
 * Fails with `MANIFEST_INVALID` naming the offending field; never throws. Size is checked by
 * `checkManifestSize` before the bytes are read in full.
 */
export const parseManifest = (text: string, contentType?: string): Result<Manifest> => {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    return invalid(`manifest is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(doc)) return invalid('manifest must be a JSON object');
  if (doc['schemaVersion'] !== 2) {
    return invalid('schemaVersion must be 2', { field: 'schemaVersion' });
  }
  const mediaType = mediaTypeOf(contentType, doc);
  if (!mediaType.ok) return mediaType;
  const kind = manifestKinds[mediaType.value] as ManifestKind;
  const artifactType = optionalString(doc['artifactType'], 'artifactType');
  if (!artifactType.ok) return artifactType;
  const annotations = annotationsOf(doc['annotations'], 'annotations');
  if (!annotations.ok) return annotations;
  let subject: Descriptor | undefined;
  if (doc['subject'] !== undefined && doc['subject'] !== null) {
    const parsed = parseDescriptor(doc['subject'], 'subject');
    if (!parsed.ok) return parsed;
    subject = parsed.value;
  }
  const common = {
    mediaType: mediaType.value,
    kind,
    ...(subject !== undefined && { subject }),
    ...(artifactType.value !== undefined && { artifactType: artifactType.value }),
    ...(annotations.value !== undefined && { annotations: annotations.value }),
  };
  if (kind === 'index') {
    const manifests = parseDescriptors(doc['manifests'], 'manifests');
    if (!manifests.ok) return manifests;
    return ok({ ...common, layers: [], manifests: manifests.value });
  }
  const config = parseDescriptor(doc['config'], 'config');
  if (!config.ok) return config;
  const layers = parseDescriptors(doc['layers'], 'layers');
  if (!layers.ok) return layers;
  if (mediaType.value === mediaTypes.dockerManifest && doc['mediaType'] === undefined) {
    return invalid('a Docker schema 2 manifest must name its mediaType', { field: 'mediaType' });
  }
  return ok({ ...common, config: config.value, layers: layers.value, manifests: [] });
};

/** What must exist in the repository before the manifest is accepted (not the subject). */
export const manifestReferences = (manifest: Manifest): ManifestReferences => {
  const blobs: Digest[] = [];
  const add = (list: Digest[], digest: Digest) => {
    if (!list.includes(digest)) list.push(digest);
  };
  if (manifest.config !== undefined) add(blobs, manifest.config.digest);
  for (const layer of manifest.layers) {
    if (layer.urls === undefined || layer.urls.length === 0) add(blobs, layer.digest);
  }
  const manifests: Digest[] = [];
  for (const child of manifest.manifests) add(manifests, child.digest);
  return { blobs, manifests };
};

/**
 * The artifact type the referrers API reports: the declared `artifactType`, else for an image
 * manifest its config's media type (OCI distribution-spec 1.1, "Listing Referrers").
 */
export const effectiveArtifactType = (manifest: Manifest): string | undefined =>
  manifest.artifactType ?? (manifest.kind === 'image' ? manifest.config?.mediaType : undefined);

/** Fails with `SIZE_INVALID` when a manifest is over the cap (the edge answers 413). */
export const checkManifestSize = (size: number, limit = manifestMaxBytes): Result<number> =>
  size <= limit
    ? ok(size)
    : fail(
        new ShoalError('SIZE_INVALID', `manifest is ${size} bytes; the limit is ${limit} bytes`, {
          detail: { size, limit },
        }),
      );
