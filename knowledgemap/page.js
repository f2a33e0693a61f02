"use strict";
const t0 = performance.now();
const D = JSON.parse(document.getElementById("kmap-data").textContent);
function b64(s, Type) { const b = atob(s), u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return new Type(u.buffer); }
const N = D.count, X = b64(D.x, Uint16Array), Y = b64(D.y, Uint16Array), COLOUR = b64(D.colour, Uint8Array);
const CELLS = D.cells, START = b64(D.cellStart, Uint32Array), TITLES = N ? D.titles.split("\n") : [];
const LEVELS = D.levels.map(l => ({ ...l, region: b64(l.region, Uint16Array) }));
const PALETTE = D.palette, RGB = PALETTE.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
const PACKED = new Uint32Array(RGB.map(([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0));
const FINE_ZOOM = 2.2, MIN_POINTS = D.minPoints, MIN_FILL = D.minFill, HEAT = 128, M = 0.05;  // heat grid over [-M, 1 + M]^2
// Three layers: points (bottom), the knowledge heatmap over them, names and questions on top (and the events).
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const pointsCanvas = document.getElementById("points"), pctx = pointsCanvas.getContext("2d");
const heatCanvas = document.getElementById("heat"), hctx = heatCanvas.getContext("2d");
const tip = document.getElementById("tooltip");
const view = { scale: 1, tx: 0, ty: 0 };
let W = 0, H = 0, R = 1, base = 1, ox = 0, oy = 0, highlight = [], answers = {}, active = -1, img = null, u32 = null, queued = false;
const kmap = window.kmap = { pointCount: N, drawnPoints: 0, heatmapVersion: 0, errors: [], hovered: -1, placedLabels: [] };

// Map [0, 1]^2 to CSS pixels, y up like the PNG.
function sx(x) { return (x * base + ox) * view.scale + view.tx; }
function sy(y) { return ((1 - y) * base + oy) * view.scale + view.ty; }
function ux(px) { return ((px - view.tx) / view.scale - ox) / base; }
function uy(py) { return 1 - ((py - view.ty) / view.scale - oy) / base; }
kmap.screenPosition = i => [sx(X[i] / 65535), sy(Y[i] / 65535)];

// Where the points are, with summed-area tables so a label's box is checked in O(1) (as
// knowledgemap/placement.py): points counted on a fine COUNT grid in cells wholly inside the box,
// occupancy (cells with a point or next to one) judged on the coarser BINS grid.
const BINS = D.bins, COUNT = D.countBins;
function summed(g, n) {
  const T = new Int32Array((n + 1) * (n + 1));
  for (let a = 1; a <= n; a++) for (let b = 1; b <= n; b++) { const k = a * (n + 1) + b, up = k - (n + 1); T[k] = g[(a - 1) * n + b - 1] + T[up] + T[k - 1] - T[up - 1]; }
  return T;
}
function histogram(n) { const g = new Int32Array(n * n); for (let i = 0; i < N; i++) g[Math.min(n - 1, (X[i] * n / 65536) | 0) * n + Math.min(n - 1, (Y[i] * n / 65536) | 0)]++; return g; }
const SAT = summed(histogram(COUNT), COUNT), FILLED = summed((function dilate(g) {
  const out = new Int32Array(BINS * BINS);
  for (let a = 0; a < BINS; a++) for (let b = 0; b < BINS; b++) if (g[a * BINS + b])
    for (let i = Math.max(0, a - 1); i <= Math.min(BINS - 1, a + 1); i++) for (let j = Math.max(0, b - 1); j <= Math.min(BINS - 1, b + 1); j++) out[i * BINS + j] = 1;
  return out;
})(histogram(BINS)), BINS);
function boxSum(T, n, x0, y0, x1, y1) { const s = n + 1; return T[x1 * s + y1] - T[x0 * s + y1] - T[x1 * s + y0] + T[x0 * s + y0]; }
// Zoomed in, a label covers less of the map, so it needs fewer points under it (never fewer than 2).
function minPoints() { return Math.max(2, Math.round(MIN_POINTS / view.scale)); }
kmap.minPoints = minPoints;
function onGround(mx0, my0, mx1, my1) {  // a box in map units: inside the map, enough points, mostly occupied
  if (mx0 < 0 || my0 < 0 || mx1 > 1 || my1 > 1) return false;
  const i0 = Math.ceil(mx0 * COUNT), j0 = Math.ceil(my0 * COUNT), i1 = Math.floor(mx1 * COUNT), j1 = Math.floor(my1 * COUNT);
  if (i1 <= i0 || j1 <= j0 || boxSum(SAT, COUNT, i0, j0, i1, j1) < minPoints()) return false;
  const x0 = Math.min(BINS - 1, Math.floor(mx0 * BINS)), y0 = Math.min(BINS - 1, Math.floor(my0 * BINS));
  const x1 = Math.max(x0 + 1, Math.min(BINS, Math.ceil(mx1 * BINS))), y1 = Math.max(y0 + 1, Math.min(BINS, Math.ceil(my1 * BINS)));
  return boxSum(FILLED, BINS, x0, y0, x1, y1) / ((x1 - x0) * (y1 - y0)) >= MIN_FILL;
}
kmap.pointsUnder = (mx0, my0, mx1, my1) => { let n = 0; for (let i = 0; i < N; i++) { const x = X[i] / 65535, y = Y[i] / 65535; if (x >= mx0 && x <= mx1 && y >= my0 && y <= my1) n++; } return n; };

// Points: splatted into an ImageData at device resolution, visiting only the grid cells in view
// (points arrive sorted by cell, START[c] .. START[c + 1] per cell, shuffled inside a cell).
function drawPoints() {
  const PW = pointsCanvas.width, PH = pointsCanvas.height;
  if (!img || img.width !== PW || img.height !== PH) { img = pctx.createImageData(PW, PH); u32 = new Uint32Array(img.data.buffer); }
  u32.fill(0);
  const boost = Math.min(3, Math.sqrt(view.scale));
  const s = Math.max(1, Math.round(R * (N < 5000 ? 3 : N < 60000 ? 2 : 1.5) * boost));
  const A = base * view.scale * R / 65535, bx = (ox * view.scale + view.tx) * R - s / 2, by = (oy * view.scale + view.ty + base * view.scale) * R - s / 2;
  const cell = v => Math.max(0, Math.min(CELLS - 1, Math.floor(v * CELLS)));
  const cx0 = cell(ux(0)), cx1 = cell(ux(W)), cy0 = cell(uy(H)), cy1 = cell(uy(0));
  let drawn = 0;
  for (let cx = cx0; cx <= cx1; cx++) {
    const end = START[cx * CELLS + cy1 + 1];
    for (let i = START[cx * CELLS + cy0]; i < end; i++) {
      const px = (X[i] * A + bx) | 0, py = (by - Y[i] * A) | 0;
      if (px < -s || py < -s || px >= PW || py >= PH) continue;
      drawn++;
      const col = PACKED[COLOUR[i] % PACKED.length];
      if (px >= 0 && py >= 0 && px <= PW - s && py <= PH - s) {
        for (let dy = 0, p = py * PW + px; dy < s; dy++, p += PW) for (let dx = 0; dx < s; dx++) u32[p + dx] = col;
      } else {
        for (let dy = Math.max(0, -py); dy < s && py + dy < PH; dy++) for (let dx = Math.max(0, -px); dx < s && px + dx < PW; dx++) u32[(py + dy) * PW + px + dx] = col;
      }
    }
  }
  pctx.putImageData(img, 0, 0);
  kmap.drawnPoints = drawn;
}

// Region names (as knowledgemap/placement.py): first each question's region at both levels, next
// to its marker; then coarse ones when zoomed out, the finer neighbourhoods first when zoomed in.
// Each at the first of its anchors where it is over the map, clear of the labels before it, and
// over points mostly of its own region.
const FONT = { coarse: "700 14px system-ui, sans-serif", fine: "italic 500 11.5px system-ui, sans-serif" };
const LINE = { coarse: 16, fine: 13 }, GAP = 5, PAD = 2, OWN_SHARE = D.ownShare, widths = new Map();
const LEAD = D.lead.map(([k, r]) => [LEVELS[k], r]), COARSE = LEVELS.filter(l => l.name === "coarse");
function labelSize(level, lines) {
  const key = level.name + "\n" + lines.join("\n");
  if (!widths.has(key)) { ctx.font = FONT[level.name]; widths.set(key, Math.max(...lines.map(l => ctx.measureText(l).width))); }
  return [widths.get(key) + 8, lines.length * LINE[level.name] + 4];
}
function mapBox(box) { return [ux(box[0]), uy(box[3]), ux(box[2]), uy(box[1])]; }
// Most of the points under a box (if any) are of the region it names. A pan moves no label on the
// map, so the answers are kept until the zoom or the window changes.
const owned = new Map(); let ownedAt = "";
function ownEnough(level, region, box) {
  const [mx0, my0, mx1, my1] = mapBox(box), at = view.scale + " " + base;
  if (at !== ownedAt) { owned.clear(); ownedAt = at; }
  const key = level.name + region + " " + [mx0, my0, mx1, my1].map(v => v.toFixed(6)).join(" ");
  if (!owned.has(key)) owned.set(key, countOwn(level, region, mx0, my0, mx1, my1));
  return owned.get(key);
}
function countOwn(level, region, mx0, my0, mx1, my1) {
  const c = v => Math.max(0, Math.min(CELLS - 1, Math.floor(v * CELLS)));
  let own = 0, all = 0;
  for (let gx = c(mx0); gx <= c(mx1); gx++) for (let i = START[gx * CELLS + c(my0)]; i < START[gx * CELLS + c(my1) + 1]; i++) {
    const x = X[i] / 65535, y = Y[i] / 65535;
    if (x >= mx0 && x <= mx1 && y >= my0 && y <= my1) { all++; if (level.region[i] === region) own++; }
  }
  return own >= OWN_SHARE * all;
}
function placeLabels() {
  const panel = document.getElementById("panel").getBoundingClientRect();
  const hint = document.getElementById("hint").getBoundingClientRect();
  const taken = [[panel.left, panel.top, panel.right, panel.bottom], [hint.left, hint.top, hint.right, hint.bottom], ...D.questions.map(q => [sx(q.x) - 11, sy(q.y) - 11, sx(q.x) + 11, sy(q.y) + 11])];
  const placed = [], named = new Set();
  const clear = b => b[0] >= 0 && b[1] >= 0 && b[2] <= W && b[3] <= H && !taken.some(t => b[0] < t[2] + PAD && t[0] < b[2] + PAD && b[1] < t[3] + PAD && t[1] < b[3] + PAD);
  const fits = s => clear(s.box) && onGround(...mapBox(s.box)) && ownEnough(s.level, s.region, s.box);
  const put = (s, beside) => { placed.push({ ...s, level: s.level.name, beside, mapBox: mapBox(s.box) }); taken.push(s.box); named.add(s.text); };
  for (const [level, region] of LEAD) {
    const spots = () => questionSpots(level, region, placed), first = find(spots(), () => true);
    if (!first || named.has(first.text)) continue;
    const found = find(spots(), fits);
    if (found) { put(found, false); continue; }
    const beside = find(spots(), s => clear(s.box) && ownEnough(level, region, s.box)) || find(spots(), s => clear(s.box));
    if (beside) put(beside, true);
  }
  for (const level of view.scale < FINE_ZOOM ? COARSE : [...LEVELS].reverse()) for (const region of level.order) {
    const spots = level.anchors[region].map(([ax, ay]) => spot(level, region, sx(ax), sy(ay)));
    if (!spots.length || named.has(spots[0].text)) continue;  // a neighbourhood named like its region
    const found = spots.find(fits);
    if (found) put(found, false);
  }
  // Coarse regions still unnamed (islands smaller than their names): just above the island, touching it.
  if (view.scale <= FINE_ZOOM * 2) for (const level of COARSE) for (const region of level.order) {
    if (!level.anchors[region].length) continue;
    const [ax, ay] = level.anchors[region][0], s = spot(level, region, sx(ax), sy(ay));
    const above = spot(level, region, s.cx, s.cy - (s.box[3] - s.box[1]) / 2 - GAP);
    if (!named.has(s.text) && clear(above.box) && ownEnough(level, region, above.box)) put(above, true);
  }
  return placed;
}
function spot(level, region, cx, cy, text = level.labels[region]) {  // a label of the region centred at (cx, cy), CSS pixels
  const lines = text.split("\n"), [w, h] = labelSize(level, lines);
  return { text: lines.join(" "), level, region, lines, cx, cy, box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] };
}
// A question's region: centred on each anchor (nearest the question first), beside each, under or
// over each name placed; then all of these again with the name on two lines. Made as they are
// tried: most names fit on one of the first.
function* questionSpots(level, region, placed) {
  for (const text of new Set([level.labels[region], level.narrow[region]])) {
    const centred = level.anchors[region].map(([ax, ay]) => spot(level, region, sx(ax), sy(ay), text));
    if (!centred.length) return;
    yield* centred;
    const [w, h] = [centred[0].box[2] - centred[0].box[0], centred[0].box[3] - centred[0].box[1]], dx = w / 2 + GAP, dy = h / 2 + GAP;
    for (const s of centred) for (const [x, y] of [[0, -dy], [0, dy], [dx, 0], [-dx, 0], [dx, -dy], [-dx, -dy], [dx, dy], [-dx, dy]]) yield spot(level, region, s.cx + x, s.cy + y, text);
    for (const p of placed) for (const k of [-1, 1]) yield spot(level, region, p.cx, p.cy + k * ((p.box[3] - p.box[1] + h) / 2 + PAD + .01), text);
  }
}
function find(items, test) { for (const item of items) if (test(item)) return item; return null; }
function drawLabels(placed) {
  ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round";
  for (const p of placed) {
    ctx.font = FONT[p.level]; const line = LINE[p.level], top = p.cy - (p.lines.length - 1) * line / 2;
    p.lines.forEach((l, k) => {
      ctx.lineWidth = 4; ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.strokeText(l, p.cx, top + k * line);
      ctx.fillStyle = p.level === "coarse" ? "#1d1d1d" : "#3a3a3a"; ctx.fillText(l, p.cx, top + k * line);
    });
  }
  kmap.placedLabels = placed.map(({ text, level, region, box, mapBox, beside }) => ({ text, level, region, box, mapBox, beside: !!beside }));
}

// Questions: numbered markers, coloured once answered.
function drawQuestions() {
  ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.font = "700 11px system-ui, sans-serif";
  D.questions.forEach((q, i) => {
    const x = sx(q.x), y = sy(q.y);
    ctx.beginPath(); ctx.arc(x, y, 10, 0, 2 * Math.PI);
    ctx.fillStyle = i in answers ? (answers[i] ? "#1a7f37" : "#b42318") : i === active ? "#111" : "#fff"; ctx.fill();
    ctx.lineWidth = 1.6; ctx.strokeStyle = "#111"; ctx.stroke();
    ctx.fillStyle = i in answers || i === active ? "#fff" : "#111"; ctx.fillText(String(i + 1), x, y + .5);
  });
}

function draw() {
  const t = performance.now();
  queued = false;
  drawPoints();
  ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(R, 0, 0, R, 0, 0);
  for (const i of highlight) { ctx.beginPath(); ctx.arc(sx(X[i] / 65535), sy(Y[i] / 65535), 6, 0, 2 * Math.PI); ctx.lineWidth = 2; ctx.strokeStyle = "#000"; ctx.stroke(); }
  drawLabels(placeLabels());
  drawQuestions();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  drawHeat();
  kmap.lastDrawMs = performance.now() - t;
}
function requestDraw() { if (!queued) { queued = true; requestAnimationFrame(draw); } }

// Knowledge heatmap: a Gaussian kernel over the answered questions (right = 1, wrong = 0),
// Nadaraya-Watson on a HEAT x HEAT grid, shown only where the map has articles (a blurred
// occupancy mask), drawn smoothly scaled over the points (at 250,000 points they cover the ground).
const MASK = (function mask() {  // on a grid of about four points per cell, blurred, sampled bilinearly at HEAT x HEAT
  const G = Math.max(8, Math.min(HEAT, Math.round(Math.sqrt(N) / 2))), g = new Float32Array(G * G), k = [0.06, 0.24, 0.4, 0.24, 0.06];
  const cell = v => Math.min(G - 1, ((v / 65535 + M) / (1 + 2 * M) * G) | 0);
  for (let i = 0; i < N; i++) g[cell(Y[i]) * G + cell(X[i])] = 1;
  const blur = (src, step, along) => { const out = new Float32Array(G * G); for (let r = 0; r < G; r++) for (let c = 0; c < G; c++) { let v = 0; for (let d = -2; d <= 2; d++) { const rr = along ? r : r + d, cc = along ? c + d : c; if (rr >= 0 && rr < G && cc >= 0 && cc < G) v += k[d + 2] * src[rr * G + cc]; } out[r * G + c] = v; } return out; };
  const m = blur(blur(g, 1, true), 1, false), out = new Float32Array(HEAT * HEAT);
  for (let r = 0; r < HEAT; r++) for (let c = 0; c < HEAT; c++) {
    const fy = Math.max(0, Math.min(G - 1.001, (r + .5) / HEAT * G - .5)), fx = Math.max(0, Math.min(G - 1.001, (c + .5) / HEAT * G - .5));
    const r0 = fy | 0, c0 = fx | 0, ty = fy - r0, tx = fx - c0, at = (rr, cc) => m[Math.min(G - 1, rr) * G + Math.min(G - 1, cc)];
    const v = (at(r0, c0) * (1 - tx) + at(r0, c0 + 1) * tx) * (1 - ty) + (at(r0 + 1, c0) * (1 - tx) + at(r0 + 1, c0 + 1) * tx) * ty;
    out[r * HEAT + c] = Math.min(1, v * 2.5);
  }
  return out;
})();
const heatImage = document.createElement("canvas"); heatImage.width = heatImage.height = HEAT;
let heat = null;
function computeHeat() {
  const done = Object.keys(answers).map(Number), s2 = 2 * D.sigma * D.sigma;
  if (!done.length) { heat = null; return; }
  heat = new Float32Array(HEAT * HEAT * 2);
  const image = heatImage.getContext("2d").createImageData(HEAT, HEAT);
  for (let r = 0; r < HEAT; r++) for (let c = 0; c < HEAT; c++) {
    const x = (c + .5) / HEAT * (1 + 2 * M) - M, y = (r + .5) / HEAT * (1 + 2 * M) - M; let num = 0, den = 0;
    for (const q of done) { const dx = x - D.questions[q].x, dy = y - D.questions[q].y, w = Math.exp(-(dx * dx + dy * dy) / s2); num += w * answers[q]; den += w; }
    const known = den > 1e-9 ? num / den : .5, evidence = Math.min(1, den), cell = r * HEAT + c, p = ((HEAT - 1 - r) * HEAT + c) * 4;
    heat[cell * 2] = known; heat[cell * 2 + 1] = evidence;
    const [cr, cg, cb] = known < .5 ? mix([215, 60, 50], [240, 200, 80], known * 2) : mix([240, 200, 80], [40, 150, 70], known * 2 - 1);
    image.data[p] = cr; image.data[p + 1] = cg; image.data[p + 2] = cb; image.data[p + 3] = 255 * .5 * evidence * MASK[cell];
  }
  heatImage.getContext("2d").putImageData(image, 0, 0);
  document.getElementById("heatkey").style.display = "block";
  kmap.heatmapVersion++;
}
function mix(a, b, t) { return a.map((v, k) => Math.round(v + (b[k] - v) * t)); }
kmap.heatmapChecksum = () => heat ? Array.from(heat).reduce((a, v, i) => a + v * ((i % 97) + 1), 0) : 0;
kmap.heatAlphaAt = (x, y) => { if (!heat) return 0; const c = Math.min(HEAT - 1, ((x + M) / (1 + 2 * M) * HEAT) | 0), r = Math.min(HEAT - 1, ((y + M) / (1 + 2 * M) * HEAT) | 0); return heat[(r * HEAT + c) * 2 + 1] * MASK[r * HEAT + c]; };
function drawHeat() {
  hctx.setTransform(1, 0, 0, 1, 0, 0); hctx.clearRect(0, 0, heatCanvas.width, heatCanvas.height);
  if (!heat) return;
  hctx.setTransform(R, 0, 0, R, 0, 0); hctx.imageSmoothingEnabled = true; hctx.imageSmoothingQuality = "high";
  hctx.drawImage(heatImage, sx(-M), sy(1 + M), base * view.scale * (1 + 2 * M), base * view.scale * (1 + 2 * M));
}

// Hover: the nearest point within 8 px, found through the cells around the cursor.
function nearest(px, py, radius) {
  const r = Math.ceil(radius / (base * view.scale) * CELLS) + 1, cx = Math.floor(ux(px) * CELLS), cy = Math.floor(uy(py) * CELLS);
  let best = -1, bestD = radius * radius;
  for (let gx = Math.max(0, cx - r); gx <= Math.min(CELLS - 1, cx + r); gx++) {
    const lo = Math.max(0, cy - r), hi = Math.min(CELLS - 1, cy + r); if (lo > hi) continue;
    for (let i = START[gx * CELLS + lo]; i < START[gx * CELLS + hi + 1]; i++) {
      const dx = sx(X[i] / 65535) - px, dy = sy(Y[i] / 65535) - py, d = dx * dx + dy * dy; if (d < bestD) { bestD = d; best = i; }
    }
  }
  return best;
}
function regionsOf(i) { return LEVELS.slice().reverse().map(l => l.names[l.region[i]]).filter((v, k, a) => a.indexOf(v) === k).join(" · "); }
function questionAt(x, y) { return D.questions.findIndex(q => Math.hypot(sx(q.x) - x, sy(q.y) - y) < 11); }
function showTip(e, title, detail) {
  tip.textContent = ""; if (!title) { tip.style.display = "none"; return; }
  tip.append(title); if (detail) { const s = document.createElement("small"); s.textContent = detail; tip.append(s); }
  tip.style.display = "block"; tip.style.left = Math.min(e.clientX + 12, W - tip.offsetWidth - 4) + "px"; tip.style.top = (e.clientY + 14) + "px";
}

function resize() {  // the map sits right of the panel when there is room; the canvases at device resolution
  W = innerWidth; H = innerHeight; R = window.devicePixelRatio || 1;
  for (const c of [canvas, heatCanvas, pointsCanvas]) { c.width = Math.round(W * R); c.height = Math.round(H * R); }
  const left = W > 900 ? 310 : 0; base = Math.min(W - left, H) * .94; ox = left + (W - left - base) / 2; oy = (H - base) / 2; draw();
}
canvas.addEventListener("wheel", e => {
  e.preventDefault(); const f = Math.exp(-e.deltaY * .0015);
  view.tx = e.clientX - (e.clientX - view.tx) * f; view.ty = e.clientY - (e.clientY - view.ty) * f; view.scale *= f; requestDraw();
}, { passive: false });
let drag = null;
canvas.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY, view.tx, view.ty]; canvas.classList.add("dragging"); });
addEventListener("mouseup", () => { drag = null; canvas.classList.remove("dragging"); });
canvas.addEventListener("mousemove", e => {
  if (drag) { view.tx = drag[2] + e.clientX - drag[0]; view.ty = drag[3] + e.clientY - drag[1]; tip.style.display = "none"; requestDraw(); return; }
  const q = questionAt(e.clientX, e.clientY), i = q >= 0 ? -1 : nearest(e.clientX, e.clientY, 8);
  kmap.hovered = i;
  if (q >= 0) showTip(e, "Question " + (q + 1) + ": " + D.questions[q].text, "click to answer");
  else showTip(e, i >= 0 ? TITLES[i] : "", i >= 0 ? regionsOf(i) + (D.legend.length > 1 && D.colourBy === "topic" ? " · topic: " + D.legend[COLOUR[i]] : "") : "");
});
canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
canvas.addEventListener("click", e => { const q = questionAt(e.clientX, e.clientY); if (q >= 0) ask(q); });

let lowered = null;
document.getElementById("search").addEventListener("input", e => {
  const s = e.target.value.trim().toLowerCase(), LIMIT = 500; highlight = [];
  if (s.length >= 2) { lowered = lowered || TITLES.map(t => t.toLowerCase()); for (let i = 0; i < N && highlight.length < LIMIT; i++) if (lowered[i].includes(s)) highlight.push(i); }
  document.getElementById("matches").textContent = s.length >= 2 ? highlight.length + (highlight.length === LIMIT ? "+" : "") + " matches" + (highlight.length ? ", ringed" : "") : "";
  if (highlight.length) { const [x, y] = kmap.screenPosition(highlight[0]); view.tx += (ox + base / 2) - x; view.ty += H / 2 - y; }
  kmap.highlighted = highlight.length; requestDraw();
});

function ask(i) {
  active = i; const q = D.questions[i], box = document.getElementById("quiz");
  box.style.display = "block"; document.getElementById("qtext").textContent = (i + 1) + ". " + q.text;
  const opts = document.getElementById("qoptions"); opts.textContent = "";
  q.options.forEach((o, k) => { const b = document.createElement("button"); b.textContent = o; b.className = "option"; b.onclick = () => answer(i, k); opts.appendChild(b); });
  // The articles make search finds for the question (the run's model and prompt), ringed on the map.
  const near = document.getElementById("qnearest"); near.textContent = "";
  if (q.nearest.length) {
    const head = document.createElement("div"); head.textContent = "Nearest articles:"; near.appendChild(head);
    const list = document.createElement("ol");
    q.nearest.forEach(n => { const li = document.createElement("li"); li.textContent = n.title + " (" + n.score.toFixed(3) + ")"; list.appendChild(li); });
    near.appendChild(list);
  }
  highlight = q.nearest.map(n => n.point); kmap.highlighted = highlight.length;
  requestDraw();
}
function answer(i, k) {
  answers[i] = k === D.questions[i].correct ? 1 : 0; active = -1; computeHeat();
  highlight = []; kmap.highlighted = 0;
  document.getElementById("q-" + i).className = answers[i] ? "right" : "wrong";
  document.getElementById("quiz").style.display = "none";
  const n = Object.keys(answers).length, right = Object.values(answers).filter(Boolean).length;
  document.getElementById("score").textContent = right + " of " + n + " right";
  requestDraw();
}

// Benchmark hook: a scripted pan and zoom, one step per animation frame; resolves with the
// intervals between frames and the time of each draw (ms).
kmap.measureFrames = (frames) => new Promise(resolve => {
  const intervals = [], draws = []; let last = null, k = 0;
  function step(now) {
    if (last !== null) intervals.push(now - last);
    last = now;
    if (k++ >= frames) { resolve({ intervals, draws }); return; }
    if (k % 2) { view.tx += 9; view.ty -= 5; } else { const f = k % 4 ? 1.03 : 1 / 1.03; view.tx = W / 2 - (W / 2 - view.tx) * f; view.ty = H / 2 - (H / 2 - view.ty) * f; view.scale *= f; }
    draw(); draws.push(kmap.lastDrawMs); requestAnimationFrame(step);
  }
  requestAnimationFrame(step);
});
kmap.resetView = () => { view.scale = 1; view.tx = view.ty = 0; draw(); };
kmap.zoomTo = (x, y, scale) => { view.scale = scale; view.tx = 0; view.ty = 0; view.tx = W / 2 - sx(x); view.ty = H / 2 - sy(y); draw(); };

document.getElementById("meta").textContent = N.toLocaleString() + " articles · " + D.model;
const legend = document.getElementById("legend");
if (D.colourBy === "topic" && D.legend.length > 1) D.legend.forEach((t, k) => { const s = document.createElement("span"), i = document.createElement("i"); i.style.background = PALETTE[k % PALETTE.length]; s.append(i, t); legend.append(s); });
if (D.questions.length) document.getElementById("quizhead").textContent = "Quiz: answer to map what you know";
D.questions.forEach((q, i) => { const li = document.createElement("li"); li.id = "q-" + i; li.textContent = q.text; li.onclick = () => ask(i); document.getElementById("questions").appendChild(li); });
addEventListener("resize", resize);
addEventListener("error", e => kmap.errors.push(String(e.message)));
resize();
kmap.initMs = performance.now() - t0;
kmap.readyMs = performance.now();
