/** Manifest media types the registry stores and serves (OCI image-spec 1.1, Docker v2.2). */
export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  /** Docker schema 1: refused (deprecated, signed with keys nobody has any more). */
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
} as const;

/** Every manifest media type Shoal serves, for `Accept` on manifest requests. */
export const manifestAccept = [
  mediaTypes.ociIndex,
  mediaTypes.ociManifest,
  mediaTypes.dockerManifestList,
  mediaTypes.dockerManifest,
].join(', ');

export type ManifestKind = 'image' | 'index';

/** Whether a media type names an image manifest (config + layers) or an index (manifests). */
export const manifestKinds: Readonly<Record<string, ManifestKind>> = {
  [mediaTypes.ociManifest]: 'image',
  [mediaTypes.dockerManifest]: 'image',
  [mediaTypes.ociIndex]: 'index',
  [mediaTypes.dockerManifestList]: 'index',
};

/** `Type/Subtype; charset=utf-8` → `type/subtype`; undefined for an empty header. */
export const normalizeMediaType = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined;
  const base = header.split(';')[0]?.trim().toLowerCase();
  return base === undefined || base.length === 0 ? undefined : base;
};

export const isManifestMediaType = (mediaType: string): boolean =>
  Object.prototype.hasOwnProperty.call(manifestKinds, mediaType);
