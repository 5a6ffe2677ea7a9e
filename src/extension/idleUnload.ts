/**
 * Ends the engine process after the idle time the settings ask for (`ficoco.unloadAfterMinutes`), counting only the
 * time nothing was in flight. Free of 'vscode'.
 */
export class IdleUnloader {
  private active = 0;
  /** Date.now() when the last thing in flight ended; undefined while something runs */
  private idleSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    private readonly options: {
      /** the idle minutes before unloading, read again whenever the time is up or the setting changes; 0 keeps it loaded */
      minutes: () => number;
      /** whether an engine process is running at all */
      loaded: () => boolean;
      /** gets how long the engine has sat idle, which exceeds the setting when it was shortened while idle */
      unload: (idleMs: number) => void;
    },
  ) {}

  busy(): void {
    this.active++;
    this.idleSince = undefined;
    clearTimeout(this.timer);
  }

  idle(): void {
    this.active = Math.max(0, this.active - 1);
    if (this.active > 0) return;
    this.idleSince = Date.now();
    this.schedule();
  }

  /** ficoco.unloadAfterMinutes changed: an engine idle for that long already unloads now, else when it has been. */
  minutesChanged(): void {
    this.schedule();
  }

  /** Unloads once idle for the minutes set now, else waits for the rest of them (0, or nothing idle: no timer). */
  private schedule(): void {
    clearTimeout(this.timer);
    // Replies cancelled by the extension's dispose go idle after it: no timer outlives the extension.
    if (this.idleSince === undefined || this.disposed || !this.options.loaded()) return;
    const minutes = this.options.minutes();
    if (minutes <= 0) return;
    const idleMs = Date.now() - this.idleSince;
    const leftMs = minutes * 60_000 - idleMs;
    if (leftMs > 0) this.timer = setTimeout(() => this.schedule(), leftMs);
    else this.options.unload(idleMs);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
