import { ShoalError } from '../../domain';

type ListenFailure = NodeJS.ErrnoException & { address?: string; port?: number };

const isListenFailure = (error: unknown): error is ListenFailure => {
  const code = (error as ListenFailure | null)?.code;
  return code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL';
};

/**
 * A failure to listen (a busy port, a privileged one, an address this host does not have) as a
 * user can act on it: which role wanted which port, and what to change. `roleOf` names the
 * role of a port; `remedy` says how to pick another. Other errors pass through unchanged.
 */
export const explainListenError = (
  error: unknown,
  roleOf: (port: number) => string | undefined,
  remedy: (port: number) => string,
): unknown => {
  if (!isListenFailure(error)) return error;
  const port = error.port ?? 0;
  const where = `${error.address ?? '?'}:${port}`;
  const role = roleOf(port);
  const who = role === undefined ? '' : `${role}: `;
  switch (error.code) {
    case 'EADDRINUSE':
      return new ShoalError(
        'PORT_IN_USE',
        `${who}cannot listen on ${where}: another process uses the port. ${remedy(port)}`,
        { detail: { port, ...(role !== undefined && { role }) } },
      );
    case 'EACCES':
      return new ShoalError(
        'PORT_IN_USE',
        `${who}cannot listen on ${where}: permission denied (ports below 1024 need ` +
          `privileges). ${remedy(port)}`,
        { detail: { port, ...(role !== undefined && { role }) } },
      );
    default:
      return new ShoalError(
        'CONFIG_INVALID',
        `${who}cannot listen on ${where}: ${error.address} is not an address of this host ` +
          '(use 127.0.0.1, 0.0.0.0 or one of its interfaces)',
      );
  }
};
