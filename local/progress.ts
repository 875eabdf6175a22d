/**
 * A progress bar on stderr for the local tools, without a dependency. On a
 * terminal it redraws one line (at most ten times a second, so drawing costs
 * nothing next to the workload); when stderr is a file or a pipe (CI logs,
 * `2> run.log`) it writes plain lines instead: one per quarter, one at the end.
 */
export interface ProgressOptions {
  /** @default process.stderr */
  readonly stream?: NodeJS.WriteStream;
  /** @default - the stream's `isTTY` */
  readonly interactive?: boolean;
  /** Writes nothing at all (tests). @default false */
  readonly silent?: boolean;
}

const BAR_WIDTH = 28;
const REDRAW_MS = 100;

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly interactive: boolean;
  private readonly silent: boolean;
  private label = '';
  private total = 0;
  private done = 0;
  private started = 0;
  private lastDraw = 0;
  private lastQuarter = 0;

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.interactive = options.interactive ?? Boolean(this.stream.isTTY);
    this.silent = options.silent ?? false;
  }

  /** Starts a new task of `total` steps. */
  start(label: string, total: number): void {
    this.label = label;
    this.total = Math.max(0, total);
    this.done = 0;
    this.started = performance.now();
    this.lastDraw = 0;
    this.lastQuarter = 0;
    this.draw(true);
  }

  /** Records that `done` steps are complete (absolute, not an increment). */
  update(done: number): void {
    this.done = Math.min(done, this.total);
    this.draw(this.done === this.total);
  }

  /** Ends the task; `summary` replaces the bar (terminal) or ends the line (plain). */
  finish(summary = ''): void {
    if (this.silent) return;
    const seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    const text = `${this.label}: ${this.done}/${this.total} in ${seconds} s${summary ? ` — ${summary}` : ''}`;
    this.stream.write(this.interactive ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  /** A one-off message that does not disturb the bar. */
  note(message: string): void {
    if (this.silent) return;
    this.stream.write(this.interactive ? `\r\x1b[K${message}\n` : `${message}\n`);
    if (this.interactive && this.total > 0 && this.done < this.total) this.draw(true);
  }

  private draw(force: boolean): void {
    if (this.silent) return;
    const now = performance.now();
    if (this.interactive) {
      if (!force && now - this.lastDraw < REDRAW_MS) return;
      this.lastDraw = now;
      const fraction = this.total === 0 ? 1 : this.done / this.total;
      const filled = Math.round(fraction * BAR_WIDTH);
      const elapsed = (now - this.started) / 1000;
      const rate = elapsed > 0 ? Math.round(this.done / elapsed) : 0;
      const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
      this.stream.write(`\r\x1b[K${bar} ${String(Math.round(fraction * 100)).padStart(3)}%  ${this.label}  ${this.done}/${this.total}  ${rate}/s`);
      return;
    }
    // Plain output: a line per completed quarter keeps long runs visibly alive in a log.
    const quarter = this.total === 0 ? 4 : Math.floor((this.done / this.total) * 4);
    if (quarter > this.lastQuarter && quarter < 4) {
      this.lastQuarter = quarter;
      this.stream.write(`${this.label}: ${quarter * 25}% (${this.done}/${this.total})\n`);
    }
  }
}
