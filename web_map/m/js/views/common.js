// Pieces shared by the report and event screens: a photo picker and "where am I now".

import { resizePhoto } from "../photos.js";
import { esc } from "../util.js";

export const MAX_PHOTOS = 6;

// Keeps resized photos (Blobs) for one form and draws their thumbnails.
export class PhotoPicker {
  constructor(inputs, list, onError) {
    this.photos = [];
    this.list = list;
    this.onError = onError;
    for (const input of inputs) {
      input.addEventListener("change", async () => {
        for (const file of [...input.files].slice(0, MAX_PHOTOS - this.photos.length)) {
          try {
            const r = await resizePhoto(file);
            this.photos.push({ ...r, url: URL.createObjectURL(r.blob) });
          } catch (e) {
            this.onError(`照片无法读取：${e.message}`);
          }
        }
        input.value = "";
        this.draw();
      });
    }
  }

  draw() {
    this.list.innerHTML = this.photos.map((p, i) => `<li><img src="${p.url}" alt="照片 ${i + 1}（${p.width}×${p.height}）">
      <button type="button" data-i="${i}" aria-label="删除照片 ${i + 1}">×</button></li>`).join("");
    for (const b of this.list.querySelectorAll("button")) {
      b.addEventListener("click", () => {
        URL.revokeObjectURL(this.photos[Number(b.dataset.i)].url);
        this.photos.splice(Number(b.dataset.i), 1);
        this.draw();
      });
    }
  }

  blobs() {
    return this.photos.map((p) => p.blob);
  }

  reset() {
    this.photos.forEach((p) => URL.revokeObjectURL(p.url));
    this.photos = [];
    this.draw();
  }
}

// The freshest position: the patrol's latest fix if recent, else a new one from the source.
export async function currentFix(app, maxAgeMs = 15_000) {
  const l = app.patrol && app.patrol.latest;
  if (l && Date.now() - l.at <= maxAgeMs) return l;
  return app.source.once();
}

export function fixLabel(fix) {
  if (!fix) return "未定位";
  const acc = fix.accuracy ? `，精度 ±${Math.round(fix.accuracy)} 米` : "";
  return `${fix.lon.toFixed(6)}, ${fix.lat.toFixed(6)}（${esc(fix.crs)}${acc}）`;
}
