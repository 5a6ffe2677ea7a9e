import { PNG } from 'pngjs';

/** A width × height screenshot-like PNG: a light page, a dark title bar and a coloured dialog in the middle. */
export function screenshotPng(width = 1920, height = 1080): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const titleBar = y < height / 27;
      const dialog = Math.abs(x - width / 2) < width * 0.156 && Math.abs(y - height / 2) < height * 0.139;
      png.data[i] = titleBar ? 40 : dialog ? 200 : 245;
      png.data[i + 1] = titleBar ? 40 : dialog ? 60 : 245;
      png.data[i + 2] = titleBar ? 48 : dialog ? 50 : 240;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}
