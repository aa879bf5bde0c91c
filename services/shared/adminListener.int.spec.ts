import { createHttpApp } from './http';
import { silentLogger } from './logger';

// With an admin listener, /metrics and the detailed /health move there: the public listener
// answers /health with the status only (no reason, no service name) and has no /metrics.

describe('the admin listener', () => {
  it('serves /metrics and the detailed /health; the main listener only the status', async () => {
    let reason: string | undefined = 'joining the ring';
    const { app, listen } = createHttpApp({
      service: 'origin',
      logger: silentLogger(),
      notReady: () => reason,
      admin: { host: '127.0.0.1', port: 0 },
    });
    const { url, adminUrl } = await listen({ host: '127.0.0.1', port: 0 });
    try {
      expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const main = await fetch(`${url}/health`);
      expect(main.status).toBe(503);
      expect(await main.json()).toEqual({ status: 'unavailable' });
      const detailed = await fetch(`${adminUrl}/health`);
      expect(await detailed.json()).toEqual({ status: 'unavailable', reason: 'joining the ring' });
      reason = undefined;
      expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
      expect(await (await fetch(`${adminUrl}/health`)).json()).toEqual({
        status: 'ok',
        service: 'origin',
      });
      expect((await fetch(`${url}/metrics`)).status).toBe(404);
      const metrics = await fetch(`${adminUrl}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('shoal_http_requests_total');
    } finally {
      await app.close();
    }
    // Closing the app closes the admin listener too.
    await expect(fetch(`${adminUrl}/health`)).rejects.toThrow();
  });
});
