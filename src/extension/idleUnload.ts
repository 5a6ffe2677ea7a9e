/**
 * Ends the engine process after the idle time the settings ask for (`ficoco.unloadAfterMinutes`), counting only the
 * time nothing was in flight. Free of 'vscode'.
 */
export class IdleUnloader {
  private active = 0;
  private timer: NodeJS.Timeout | undefined;

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
    if (this.active > 0 || minutes <= 0) return;
    this.timer = setTimeout(() => {
      if (this.active === 0 && this.options.loaded()) this.options.unload(minutes);
    }, minutes * 60_000);
  }

  dispose(): void {
    clearTimeout(this.timer);
  }
}
