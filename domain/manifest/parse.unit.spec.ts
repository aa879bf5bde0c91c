import {
  checkManifestSize,
  effectiveArtifactType,
  manifestMaxBytes,
  manifestReferences,
  mediaTypes,
  parseManifest,
} from '.';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const desc = (mediaType: string, c: string, extra: Record<string, unknown> = {}) => ({
  mediaType,
  digest: d(c),
  size: 10,
  ...extra,
});
const image = (extra: Record<string, unknown> = {}) => ({
  schemaVersion: 2,
  mediaType: mediaTypes.ociManifest,
  config: desc('application/vnd.oci.image.config.v1+json', 'a'),
  layers: [desc('application/vnd.oci.image.layer.v1.tar+gzip', 'b')],
  ...extra,
});
const parse = (doc: unknown, contentType?: string) =>
  parseManifest(JSON.stringify(doc), contentType);
const errorOf = (result: ReturnType<typeof parse>) => (result.ok ? undefined : result.error);

describe('parseManifest', () => {
  it('accepts an OCI image manifest and lists config and layers as references', () => {
    const result = parse(image(), mediaTypes.ociManifest);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.kind).toBe('image');
    expect(manifestReferences(result.value)).toEqual({ blobs: [d('a'), d('b')], manifests: [] });
  });

  it('accepts a manifest without mediaType when Content-Type names it, keeping unknown fields', () => {
    const { mediaType: _omit, ...doc } = image({ config: desc('x/y', 'a', { newField: 'aGk=' }) });
    const result = parse(doc, `${mediaTypes.ociManifest}; charset=utf-8`);
    expect(result.ok && result.value.mediaType).toBe(mediaTypes.ociManifest);
  });

  it('infers the type from the document when Content-Type is generic or missing', () => {
    const { mediaType: _omit, ...doc } = image();
    expect(parse(doc).ok && parse(doc).ok).toBe(true);
    const index = { schemaVersion: 2, manifests: [desc(mediaTypes.ociManifest, 'c')] };
    const parsed = parse(index, 'application/json');
    expect(parsed.ok && parsed.value.kind).toBe('index');
  });

  it('accepts Docker schema 2 manifests and manifest lists', () => {
    const docker = image({ mediaType: mediaTypes.dockerManifest });
    expect(parse(docker, mediaTypes.dockerManifest).ok).toBe(true);
    const list = {
      schemaVersion: 2,
      mediaType: mediaTypes.dockerManifestList,
      manifests: [desc(mediaTypes.dockerManifest, 'c', { platform: { os: 'linux' } })],
    };
    const result = parse(list, mediaTypes.dockerManifestList);
    expect(result.ok && manifestReferences(result.value)).toEqual({
      blobs: [],
      manifests: [d('c')],
    });
  });

  it('reads subject, artifactType and annotations of artifacts', () => {
    const artifact = image({
      artifactType: 'application/vnd.example.sbom',
      config: desc(mediaTypes.ociEmpty, 'e'),
      subject: desc(mediaTypes.ociManifest, 'f'),
      annotations: { 'org.example': 'yes' },
    });
    const result = parse(artifact, mediaTypes.ociManifest);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.subject?.digest).toBe(d('f'));
    expect(effectiveArtifactType(result.value)).toBe('application/vnd.example.sbom');
    expect(result.value.annotations).toEqual({ 'org.example': 'yes' });
    // The subject need not exist: it is not a reference.
    expect(manifestReferences(result.value).blobs).not.toContain(d('f'));
  });

  it('reports the config media type as artifact type when none is declared', () => {
    const result = parse(image({ config: desc('application/vnd.example.config', 'a') }));
    expect(result.ok && effectiveArtifactType(result.value)).toBe('application/vnd.example.config');
  });

  it('does not require foreign layers (with urls) to exist', () => {
    const foreign = desc('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'c', {
      urls: ['https://example.com/layer'],
    });
    const result = parse(image({ layers: [foreign] }));
    expect(result.ok && manifestReferences(result.value).blobs).toEqual([d('a')]);
  });

  it.each([
    ['not JSON', 'blablabla', undefined, /not valid JSON/],
    ['an array', '[]', undefined, /JSON object/],
    ['schema version 1', JSON.stringify(image({ schemaVersion: 1 })), undefined, /schemaVersion/],
    [
      'a mediaType that contradicts Content-Type',
      JSON.stringify(image()),
      mediaTypes.ociIndex,
      /does not match/,
    ],
    ['schema 1', JSON.stringify({ schemaVersion: 2 }), mediaTypes.dockerSchema1Signed, /schema 1/],
    [
      'an unknown type',
      JSON.stringify(image({ mediaType: 'text/plain' })),
      undefined,
      /unsupported/,
    ],
    [
      'a bad layer digest',
      JSON.stringify(image({ layers: [{ mediaType: 'x/y', digest: 'sha256:xyz', size: 1 }] })),
      undefined,
      /layers\[0\]\.digest/,
    ],
    [
      'a negative size',
      JSON.stringify(image({ config: { mediaType: 'x/y', digest: d('a'), size: -1 } })),
      undefined,
      /config\.size/,
    ],
    ['missing layers', JSON.stringify(image({ layers: undefined })), undefined, /layers/],
    ['bad annotations', JSON.stringify(image({ annotations: { a: 1 } })), undefined, /annotations/],
  ])('refuses %s with MANIFEST_INVALID', (_name, text, contentType, message) => {
    const result = parseManifest(text, contentType);
    expect(errorOf(result)?.code).toBe('MANIFEST_INVALID');
    expect(errorOf(result)?.message).toMatch(message);
  });
});

describe('checkManifestSize', () => {
  it('accepts 4 MiB and refuses one byte more with SIZE_INVALID', () => {
    expect(checkManifestSize(manifestMaxBytes).ok).toBe(true);
    const over = checkManifestSize(manifestMaxBytes + 1);
    expect(!over.ok && over.error.code).toBe('SIZE_INVALID');
  });
});
