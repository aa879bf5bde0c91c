import { SingleBar } from 'cli-progress';

/**
 * Progress of long work (a replay, a backfill, a collection, a benchmark), reported as it
 * goes. Work that reports progress takes a `Progress` and never decides how it is shown:
 * the command picks `createProgress` (a bar on a terminal, JSON lines, or nothing) and hands
 * it down; library code defaults to `silentProgress`.
 */
export type Progress = {
  /** Sets the amount of work (it may grow as work is discovered). */
  setTotal(total: number): void;
  /** Sets how much is done (absolute). */
  update(done: number): void;
  /** Adds to how much is done. */
  increment(by?: number): void;
  /** The work ended: draws the final state once and releases the terminal. Idempotent. */
  stop(): void;
};

/** Reports nothing. */
export const silentProgress: Progress = {
  setTotal: () => undefined,
  update: () => undefined,
  increment: () => undefined,
  stop: () => undefined,
};

/**
 * How progress is shown: `bar` redraws one line on a terminal; `json` writes one JSON line
 * per second (and a last one at the end); `quiet` writes nothing.
 */
export type ProgressMode = 'bar' | 'json' | 'quiet';

/** `--json` gives JSON lines; otherwise a bar when the stream is a terminal, else nothing. */
export const progressMode = (options: {
  json?: boolean;
  stream?: { isTTY?: boolean };
}): ProgressMode => {
  if (options.json === true) return 'json';
  return (options.stream ?? process.stderr).isTTY === true ? 'bar' : 'quiet';
};

/** One progress report, as JSON lines carry it (`etaSeconds` absent while unknown). */
export type ProgressReport = {
  readonly progress: string;
  readonly unit: string;
  readonly done: number;
  readonly total: number;
  /** Units per second over the last few seconds. */
  readonly rate: number;
  readonly etaSeconds?: number;
  readonly elapsedSeconds: number;
  readonly final: boolean;
};

export type ProgressOptions = {
  /** What is being done, e.g. `replay build-index`. */
  readonly label: string;
  /** What is counted: `events`, `blobs`, `bytes` (shown in binary multiples), … */
  readonly unit: string;
  readonly total?: number;
  readonly mode: ProgressMode;
  /** Where it is written; stderr by default, so stdout stays the command's data. */
  readonly stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Milliseconds since some origin; `performance.now` by default. */
  readonly now?: () => number;
  /** Least time between two JSON lines (default 1000 ms) or redraws of the bar (100 ms). */
  readonly intervalMs?: number;
};

/** Seconds of history the rate is measured over. */
const rateWindowMs = 5_000;

const binary = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1536` bytes → `1.5 KiB`; other units as integers with thousands separators. */
export const formatAmount = (value: number, unit: string): string => {
  if (unit !== 'bytes') return `${Math.round(value).toLocaleString('en-US')}`;
  let scaled = value;
  let index = 0;
  while (scaled >= 1024 && index < binary.length - 1) {
    scaled /= 1024;
    index += 1;
  }
  return `${index === 0 ? scaled : scaled.toFixed(1)} ${binary[index]}`;
};

/** `75` → `1m15s`; undefined → `?`. */
export const formatDuration = (seconds: number | undefined): string => {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
};

/**
 * A progress reporter. The rate is measured over the last five seconds (the whole run until
 * then), and the ETA is what is left at that rate. The bar is drawn with `cli-progress`.
 */
export const createProgress = (options: ProgressOptions): Progress => {
  if (options.mode === 'quiet') return silentProgress;
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let total = options.total ?? 0;
  let done = 0;
  let stopped = false;
  /** (time, done) samples within the rate window, oldest first. */
  const samples: Array<{ at: number; done: number }> = [{ at: started, done: 0 }];

  const report = (final: boolean): ProgressReport => {
    const at = now();
    // One sample per tenth of a second is plenty for the rate, and bounds the list.
    if (at - (samples[samples.length - 1] as { at: number }).at >= 100) samples.push({ at, done });
    while (samples.length > 2 && at - (samples[1] as { at: number }).at >= rateWindowMs) {
      samples.shift();
    }
    const first = samples[0] as { at: number; done: number };
    const span = (at - first.at) / 1000;
    const rate = span > 0 ? (done - first.done) / span : 0;
    const left = Math.max(0, total - done);
    const eta = left === 0 ? 0 : rate > 0 ? left / rate : undefined;
    return {
      progress: options.label,
      unit: options.unit,
      done,
      total,
      rate: Math.round(rate * 100) / 100,
      ...(eta !== undefined && { etaSeconds: Math.round(eta * 10) / 10 }),
      elapsedSeconds: Math.round((at - started) / 100) / 10,
      final,
    };
  };

  if (options.mode === 'json') {
    const intervalMs = options.intervalMs ?? 1000;
    let last = -Infinity;
    const emit = (final: boolean) => {
      last = now();
      stream.write(`${JSON.stringify(report(final))}\n`);
    };
    const maybe = () => {
      if (!stopped && now() - last >= intervalMs) emit(false);
    };
    return {
      setTotal(value) {
        total = value;
        maybe();
      },
      update(value) {
        done = value;
        maybe();
      },
      increment(by = 1) {
        done += by;
        maybe();
      },
      stop() {
        if (stopped) return;
        emit(true);
        stopped = true;
      },
    };
  }

  const unitText = options.unit === 'bytes' ? '' : ` ${options.unit}`;
  const payload = () => {
    const r = report(false);
    return {
      amounts: `${formatAmount(r.done, options.unit)}/${formatAmount(r.total, options.unit)}${unitText}`,
      rate: `${formatAmount(r.rate, options.unit)}${options.unit === 'bytes' ? '' : unitText}/s`,
      etaText: formatDuration(r.etaSeconds),
      elapsedText: formatDuration(r.elapsedSeconds),
    };
  };
  const bar = new SingleBar({
    format: `${options.label} {bar} {percentage}% | {amounts} | {rate} | ETA {etaText} | {elapsedText}`,
    stream,
    fps: 1000 / (options.intervalMs ?? 100),
    barsize: 24,
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    // Interrupts end the process through its own handlers (which stop the bar).
    gracefulExit: false,
  });
  // Started at the first report, so a total learned late is never drawn as 0/0.
  let barStarted = false;
  const drawEveryMs = options.intervalMs ?? 100;
  let drawn = -Infinity;
  // The payload (rate, ETA) is recomputed at the bar's own pace, not on every increment.
  const redraw = () => {
    if (!barStarted) {
      barStarted = true;
      drawn = now();
      bar.start(total, done, payload());
      return;
    }
    if (now() - drawn < drawEveryMs) {
      bar.update(done);
      return;
    }
    drawn = now();
    bar.update(done, payload());
  };
  return {
    setTotal(value) {
      total = value;
      if (barStarted) bar.setTotal(value);
      redraw();
    },
    update(value) {
      done = value;
      redraw();
    },
    increment(by = 1) {
      done += by;
      redraw();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (!barStarted) redraw();
      bar.update(done, payload());
      bar.stop();
    },
  };
};
