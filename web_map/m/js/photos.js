// Photos are resized on the phone before they are queued: a 12-megapixel original is ~4 MB on
// a mobile network; 1600 px JPEG at quality 0.8 is ~250 kB and still shows the scene clearly.

import { config } from "./config.js";

async function decode(file) {
  if (window.createImageBitmap) {
    try {
      return await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch { /* fall back to an <img> */ }
  }
  const url = URL.createObjectURL(file);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}

export async function resizePhoto(file, maxPx = config.photoMaxPx, quality = config.photoQuality) {
  const img = await decode(file);
  const w = img.width;
  const h = img.height;
  const scale = Math.min(1, maxPx / Math.max(w, h));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
  if (img.close) img.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  if (!blob) throw new Error("照片无法处理");
  return { blob, width: canvas.width, height: canvas.height, originalBytes: file.size };
}
