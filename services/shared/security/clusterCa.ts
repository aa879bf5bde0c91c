import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { ShoalError } from '../../../domain';
import type { ServiceRole } from './subject';
import { serviceRoles } from './subject';

// A cluster CA and the certificates of the roles, for tests and small setups: what
// `shoal certs init` and `shoal dev --secure` write. Keys come from Node's crypto (RSA 2048);
// node-forge builds and signs the X.509 certificates. A role's certificate names it twice: the
// common name `<role>/<name>` (read for the audit trail) and the URI SAN `shoal:role:<role>`
// (what the services trust); it is good for both ends of TLS (serverAuth and clientAuth).

/** The URI SAN that carries a certificate's role. */
export const roleUriPrefix = 'shoal:role:';

export type IssuedFiles = { readonly certFile: string; readonly keyFile: string };

export type ClusterCertificates = {
  readonly dir: string;
  readonly caFile: string;
  /** The Ed25519 key services sign and check service tokens with. */
  readonly serviceKeyFile: string;
  /** By `<role>` or `<role>/<name>` as asked. */
  readonly roles: Readonly<Record<string, IssuedFiles>>;
};

/** `proxy` or `origin/2`: a role and its instance name (default `1`). */
export const parseRoleSpec = (spec: string): { role: ServiceRole; name: string; file: string } => {
  const [role, name, ...rest] = spec.split('/');
  if (!serviceRoles.includes(role as ServiceRole) || rest.length > 0) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `unknown role "${spec}": one of ${serviceRoles.join(', ')}, optionally /<name>`,
    );
  }
  if (name !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new ShoalError('CONFIG_INVALID', `invalid instance name in "${spec}"`);
  }
  return {
    role: role as ServiceRole,
    name: name ?? '1',
    file: name === undefined ? (role as string) : `${role}-${name}`,
  };
};

const dayMs = 24 * 60 * 60 * 1000;

const newKeyPair = () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { pem, key, publicKey: forge.pki.setRsaPublicKey(key.n, key.e) };
};

/** A positive serial of 16 random bytes (RFC 5280: at most 20 octets, not negative). */
const newSerial = () => {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes.toString('hex');
};

/** Writes a file whole (a reader sees the old bytes or the new, never half). */
const writeAtomically = (path: string, data: string, mode: number) => {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, data, { mode });
  renameSync(temp, path);
};

const createCa = (cluster: string, days: number) => {
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * dayMs);
  const name = [
    { name: 'commonName', value: `Shoal cluster CA (${cluster})` },
    { name: 'organizationName', value: 'Shoal' },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.pem };
};

const issue = (
  ca: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey },
  subject: { role: ServiceRole; name: string },
  hosts: readonly string[],
  days: number,
) => {
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + days * dayMs);
  cert.setSubject([
    { name: 'commonName', value: `${subject.role}/${subject.name}` },
    { name: 'organizationName', value: 'Shoal' },
    { shortName: 'OU', value: subject.role },
  ]);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [
    ...hosts.map((host) => (isIP(host) === 0 ? { type: 2, value: host } : { type: 7, ip: host })),
    { type: 6, value: `${roleUriPrefix}${subject.role}` },
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    {
      name: 'authorityKeyIdentifier',
      keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes(),
    },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.pem };
};

/**
 * Writes (or completes) a cluster's certificates in `dir`: the CA (`ca.crt`, `ca.key`) and the
 * service-token key (`service-token.key`) when missing, and a certificate and key per role
 * (`<role>.crt`/`.key`, or `<role>-<name>.crt` for `<role>/<name>`) — missing ones only,
 * or all of them again with `renew` (new serials, same CA: the rotation). Keys are 0600.
 * Hosts go into every certificate's SAN (DNS names or IP addresses).
 */
export const initClusterCertificates = (options: {
  dir: string;
  cluster?: string;
  roles?: readonly string[];
  hosts?: readonly string[];
  days?: number;
  renew?: boolean;
}): ClusterCertificates => {
  const dir = options.dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const days = options.days ?? 365;
  const caFile = join(dir, 'ca.crt');
  const caKeyFile = join(dir, 'ca.key');
  if (!existsSync(caFile) || !existsSync(caKeyFile)) {
    const ca = createCa(options.cluster ?? 'default', Math.max(days, 3650));
    writeAtomically(caKeyFile, ca.keyPem, 0o600);
    writeAtomically(caFile, ca.certPem, 0o644);
  }
  const ca = {
    cert: forge.pki.certificateFromPem(readFileSync(caFile, 'utf8')),
    key: forge.pki.privateKeyFromPem(readFileSync(caKeyFile, 'utf8')) as forge.pki.rsa.PrivateKey,
  };
  const serviceKeyFile = join(dir, 'service-token.key');
  if (!existsSync(serviceKeyFile)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    writeAtomically(
      serviceKeyFile,
      privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      0o600,
    );
  }
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...(options.hosts ?? [])])];
  const roles: Record<string, IssuedFiles> = {};
  for (const spec of options.roles ?? defaultRoles) {
    const parsed = parseRoleSpec(spec);
    const files = {
      certFile: join(dir, `${parsed.file}.crt`),
      keyFile: join(dir, `${parsed.file}.key`),
    };
    if (options.renew === true || !existsSync(files.certFile) || !existsSync(files.keyFile)) {
      const issued = issue(ca, parsed, hosts, days);
      writeAtomically(files.keyFile, issued.keyPem, 0o600);
      writeAtomically(files.certFile, issued.certPem, 0o644);
    }
    roles[spec] = files;
  }
  return { dir, caFile, serviceKeyFile, roles };
};

/** Every role but the console (which has no listener of its own yet). */
export const defaultRoles: readonly string[] = serviceRoles.filter((role) => role !== 'console');
