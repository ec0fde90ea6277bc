// neurofm case viewer: niivue (bundled, no CDN) on volumes embedded as base64 in cases/<id>.js.
// Pages opened from file:// cannot fetch() files, so each case is a <script> that fills
// window.NEUROFM_CASES[id]; the bytes go to niivue.NVImage.new as an ArrayBuffer.
"use strict";

(function () {
  const byId = (id) => document.getElementById(id);
  const index = JSON.parse(byId("case-index").textContent);
  const ui = {
    caseSel: byId("case-select"),
    seqSel: byId("seq-select"),
    overlays: byId("overlay-toggles"),
    opacity: byId("opacity"),
    opacityValue: byId("opacity-value"),
    viewSel: byId("view-select"),
    status: byId("viewer-status"),
    metrics: byId("case-metrics"),
  };
  const state = { meta: null, images: {}, overlays: [] };
  const MAP_CAL_MIN = 0.25;
  let nv = null;

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function base64ToBuffer(text) {
    const bin = atob(text);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(el);
    });
  }

  function colormapName(key) {
    return "nfm-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
  }

  function addFlatColormap(key, hex) {
    const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    nv.addColormap(colormapName(key), {
      R: [0, c[0], c[0]],
      G: [0, c[1], c[1]],
      B: [0, c[2], c[2]],
      A: [0, 255, 255],
      I: [0, 1, 255],
    });
  }

  function applyView() {
    const v = ui.viewSel.value;
    const T = niivue.SLICE_TYPE;
    nv.opts.multiplanarShowRender = v === "multiplanar" ? niivue.SHOW_RENDER.ALWAYS
      : niivue.SHOW_RENDER.NEVER;
    const types = { multiplanar: T.MULTIPLANAR, axial: T.AXIAL, coronal: T.CORONAL,
      sagittal: T.SAGITTAL, render: T.RENDER };
    nv.setSliceType(types[v]);
  }

  // The volume stack is set in one step and uploaded once: niivue's addVolume/removeVolume/
  // setOpacity each re-upload every layer, which takes seconds per call on software WebGL.
  // This does what Niivue.setVolume does (volumes, back, overlays) for a whole list.
  function showVolumes() {
    const opacity = Number(ui.opacity.value);
    ui.opacityValue.textContent = opacity.toFixed(2);
    // Later overlays cover earlier ones: predictions first, the reference on top; hidden ones
    // are left out of the stack rather than drawn transparent.
    const shown = state.overlays.filter((o) => o.toggle.checked);
    const order = [...shown.filter((o) => o.key !== "reference"),
      ...shown.filter((o) => o.key === "reference")];
    order.forEach((o) => { o.image.opacity = opacity; });
    const stack = [state.images[ui.seqSel.value], ...order.map((o) => o.image)];
    nv.volumes = stack;
    nv.back = stack[0];
    nv.overlays = stack.slice(1);
    nv.updateGLVolume();
  }

  function renderMetrics(meta) {
    const models = Object.keys(meta.metrics);
    ui.metrics.replaceChildren();
    if (models.length === 0) return;
    const metricNames = [...new Set(models.flatMap((m) => Object.keys(meta.metrics[m])))];
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    ["model", ...metricNames].forEach((name) => {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    });
    const body = table.createTBody();
    models.forEach((m) => {
      const row = body.insertRow();
      row.insertCell().textContent = m;
      metricNames.forEach((k) => {
        const v = meta.metrics[m][k];
        row.insertCell().textContent = v === undefined ? "" : Number(v).toPrecision(3);
      });
    });
    ui.metrics.appendChild(table);
  }

  async function selectCase(id) {
    const meta = index.find((c) => c.id === id);
    setStatus("loading " + meta.case + " …");
    document.body.dataset.viewer = "loading";
    if (!(window.NEUROFM_CASES && window.NEUROFM_CASES[meta.id])) await loadScript(meta.script);
    const data = window.NEUROFM_CASES[meta.id];
    const images = {};
    for (const seq of meta.sequences) {
      images[seq] = await niivue.NVImage.new(base64ToBuffer(data.images[seq]), seq + ".nii.gz",
        "gray", 1);
    }
    ui.overlays.replaceChildren();
    const overlays = [];
    for (const ov of meta.overlays) {
      // Masks get one flat colour; maps (explanations, scaled to [0, 1]) a heat scale whose
      // lowest quarter is transparent, so the image shows through where a map is weak.
      let image;
      if (ov.kind === "map") {
        image = await niivue.NVImage.new(base64ToBuffer(data.maps[ov.key]), ov.key + ".nii.gz",
          "warm", 1, null, MAP_CAL_MIN, 1, true);
      } else {
        const blob = ov.key === "reference" ? data.reference : data.predictions[ov.key];
        addFlatColormap(ov.key, ov.colour);
        image = await niivue.NVImage.new(base64ToBuffer(blob), ov.key + ".nii.gz",
          colormapName(ov.key), 1, null, 0, 1, true);
      }
      const label = document.createElement("label");
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      // The reference and the first model start visible; more at once hide each other.
      toggle.checked = overlays.filter((o) => o.key !== "reference").length === 0;
      toggle.addEventListener("change", showVolumes);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = ov.colour;
      label.append(toggle, swatch, " " + ov.label);
      ui.overlays.appendChild(label);
      overlays.push({ key: ov.key, image, toggle });
    }
    const previous = ui.seqSel.value;
    ui.seqSel.replaceChildren(...meta.sequences.map((s) => new Option(s, s)));
    if (meta.sequences.includes(previous)) ui.seqSel.value = previous;
    Object.assign(state, { meta, images, overlays });
    showVolumes();
    if (meta.focus_mm) {
      nv.scene.crosshairPos = nv.mm2frac(meta.focus_mm);
      nv.drawScene();
    }
    renderMetrics(meta);
    const coarse = meta.downsampled > 1 ? " (shown at 1/" + meta.downsampled + " resolution)" : "";
    setStatus(meta.task + " · " + meta.case + (meta.site ? " · site " + meta.site : "") + coarse);
    requestAnimationFrame(() => { document.body.dataset.viewer = "ready"; });
  }

  async function main() {
    if (index.length === 0) {
      setStatus("No cases were listed for the viewer (viewer.json).");
      document.body.dataset.viewer = "empty";
      return;
    }
    nv = new niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true,
      loadingText: "loading …", isColorbar: false, crosshairColor: [1, 1, 1, 0.7],
      crosshairWidth: 0.3, multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID });
    await nv.attachTo("niivue-canvas");
    ui.caseSel.replaceChildren(...index.map((c) => new Option(
      c.task + " · " + c.case + (c.site ? " (" + c.site + ")" : ""), c.id)));
    ui.caseSel.addEventListener("change", () => selectCase(ui.caseSel.value).catch(fail));
    ui.seqSel.addEventListener("change", showVolumes);
    ui.opacity.addEventListener("change", showVolumes);
    ui.opacity.addEventListener("input", () => {
      ui.opacityValue.textContent = Number(ui.opacity.value).toFixed(2);
    });
    ui.viewSel.addEventListener("change", applyView);
    applyView();
    await selectCase(index[0].id);
  }

  function fail(err) {
    setStatus("Viewer error: " + err.message);
    document.body.dataset.viewer = "error";
    console.error(err);
  }

  main().catch(fail);
})();
