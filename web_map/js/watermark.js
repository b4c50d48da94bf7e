// A watermark of user and time over every page (等保 practice): a repeating, rotated text tile.

export function drawWatermark(canvas, username, { colour = "rgba(60, 60, 60, 0.10)" } = {}) {
  const paint = () => {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = window.innerWidth * dpr;
    canvas.height = window.innerHeight * dpr;
    canvas.style.width = window.innerWidth + "px";
    canvas.style.height = window.innerHeight + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, window.innerWidth, window.innerHeight);
    const stamp = new Date().toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
    const text = `${username}  ${stamp}`;
    ctx.font = "14px sans-serif";
    ctx.fillStyle = colour;
    ctx.rotate((-20 * Math.PI) / 180);
    for (let y = 0; y < window.innerHeight * 1.6; y += 110) {
      for (let x = -window.innerWidth; x < window.innerWidth * 1.5; x += 280) {
        ctx.fillText(text, x, y);
      }
    }
    canvas.dataset.text = text;
  };
  paint();
  window.addEventListener("resize", paint);
  setInterval(paint, 60_000);
}
