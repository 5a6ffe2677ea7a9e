/**
 * Ends the engine process after the idle time the settings ask for (`ficoco.unloadAfterMinutes`), counting only the
 * time nothing was in flight. Free of 'vscode'.
 */
export class IdleUnloader {
  private active = 0;
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    private readonly options: {
      /** the idle minutes before unloading, read when the engine goes idle; 0 keeps it loaded */
      minutes: () => number;
      /** whether an engine process is running at all */
      loaded: () => boolean;
      unload: (minutes: number) => void;
    },
  ) {}

  busy(): void {
    this.active++;
    clearTimeout(this.timer);
  }

  idle(): void {
    this.active = Math.max(0, this.active - 1);
    clearTimeout(this.timer);
    const minutes = this.options.minutes();
    // Replies cancelled by the extension's dispose go idle after it: no timer outlives the extension.
    if (this.active > 0 || minutes <= 0 || this.disposed) return;
    this.wait(minutes, 0);
  }

  /** Waits `minutes` more after `idleMinutes` idle; then unloads, unless the setting changed since (0, or longer). */
  private wait(minutes: number, idleMinutes: number): void {
    this.timer = setTimeout(() => {
      const idle = idleMinutes + minutes;
      const setting = this.options.minutes();
      if (this.active > 0 || setting <= 0 || !this.options.loaded()) return;
      if (setting > idle) this.wait(setting - idle, idle);
      else this.options.unload(idle);
    }, minutes * 60_000);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
