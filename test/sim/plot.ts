/**
 * CDF plots of completion times, drawn by Vega (a maintained plotting library that renders
 * SVG in Node without a browser or native builds). Vega ships as an ES module only, so it is
 * loaded with a real dynamic import (TypeScript would turn `import()` into `require`).
 */
export type CdfSeries = {
  readonly name: string;
  /** Completion times in seconds, ascending. */
  readonly times: readonly number[];
  /** Hosts that never finished count in the denominator. */
  readonly hosts?: number;
};

type VegaModule = {
  parse: (spec: unknown) => unknown;
  View: new (
    runtime: unknown,
    options: { renderer: 'none' },
  ) => { toSVG: () => Promise<string>; finalize: () => void };
};

const importEsm = new Function('specifier', 'return import(specifier)') as (
  specifier: string,
) => Promise<VegaModule>;

/** At most `limit` points of a series' empirical CDF (every point where it steps, thinned). */
const cdfPoints = (series: CdfSeries, limit = 600) => {
  const n = series.times.length;
  const total = series.hosts ?? n;
  const step = Math.max(1, Math.floor(n / limit));
  const points: Array<{ series: string; seconds: number; fraction: number }> = [];
  for (let i = 0; i < n; i += step) {
    points.push({
      series: series.name,
      seconds: series.times[i] as number,
      fraction: (i + 1) / total,
    });
  }
  if (n > 0) {
    points.push({
      series: series.name,
      seconds: series.times[n - 1] as number,
      fraction: n / total,
    });
  }
  return points;
};

/** An SVG of the completion-time CDFs, with a dashed rule at each bound given. */
export const cdfSvg = async (input: {
  readonly title: string;
  readonly series: readonly CdfSeries[];
  readonly bounds?: ReadonlyArray<{ readonly name: string; readonly seconds: number }>;
}): Promise<string> => {
  const vega = await importEsm('vega');
  const values = input.series.flatMap((s) => cdfPoints(s));
  const rules = (input.bounds ?? []).map((b) => ({ name: b.name, seconds: b.seconds }));
  const spec = {
    $schema: 'https://vega.github.io/schema/vega/v5.json',
    width: 640,
    height: 360,
    padding: 8,
    background: 'white',
    title: { text: input.title, fontSize: 14 },
    data: [
      { name: 'cdf', values },
      { name: 'bounds', values: rules },
    ],
    scales: [
      {
        name: 'x',
        type: 'linear',
        domain: {
          fields: [
            { data: 'cdf', field: 'seconds' },
            { data: 'bounds', field: 'seconds' },
          ],
        },
        range: 'width',
        zero: true,
        nice: true,
      },
      { name: 'y', type: 'linear', domain: [0, 1], range: 'height' },
      {
        name: 'color',
        type: 'ordinal',
        domain: { data: 'cdf', field: 'series' },
        range: 'category',
      },
    ],
    axes: [
      { orient: 'bottom', scale: 'x', title: 'completion time per host (s)', grid: true },
      { orient: 'left', scale: 'y', title: 'fraction of hosts done', grid: true, format: '%' },
    ],
    legends: [{ fill: 'color', stroke: 'color', orient: 'bottom-right', title: 'run' }],
    marks: [
      {
        type: 'rule',
        from: { data: 'bounds' },
        encode: {
          enter: {
            x: { scale: 'x', field: 'seconds' },
            y: { value: 0 },
            y2: { signal: 'height' },
            stroke: { value: '#888' },
            strokeDash: { value: [4, 4] },
          },
        },
      },
      {
        type: 'text',
        from: { data: 'bounds' },
        encode: {
          enter: {
            x: { scale: 'x', field: 'seconds', offset: 4 },
            y: { value: 12 },
            text: { field: 'name' },
            fill: { value: '#555' },
            fontSize: { value: 11 },
          },
        },
      },
      {
        type: 'group',
        from: { facet: { name: 'series', data: 'cdf', groupby: 'series' } },
        marks: [
          {
            type: 'line',
            from: { data: 'series' },
            encode: {
              enter: {
                x: { scale: 'x', field: 'seconds' },
                y: { scale: 'y', field: 'fraction' },
                stroke: { scale: 'color', field: 'series' },
                strokeWidth: { value: 2 },
                interpolate: { value: 'step-after' },
              },
            },
          },
        ],
      },
    ],
  };
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
};
