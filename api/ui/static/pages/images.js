// Images: generate with an image model (cost preview first), live previews from progress events when the
// provider sends them, and a gallery of the caller's images (thumbnails; a click opens the full image).
import { api, blobUrl } from "/ui/api.js";
import { el, show } from "/ui/dom.js";
import { jobPanel, preview, startJob } from "/ui/pages/jobs.js";

const PATH = "/api/v1/images/generations";

function thumb(image) {
  const img = el("img", { alt: "generated image", width: 128, height: 128, loading: "lazy", "data-testid": "thumb" });
  blobUrl(image.thumb_url).then((url) => { img.src = url; }).catch(() => { img.alt = "not available"; });
  const open = async () => { window.open(await blobUrl(image.url), "_blank", "noopener"); };
  return el("button", { class: "thumb", title: `${image.width}×${image.height}`, on: { click: open } }, img);
}

async function gallery() {
  const page = await api("GET", "/api/v1/jobs?kind=image&status=succeeded&limit=50");
  const images = page.items.flatMap((job) => ((job.result && job.result.images) || []).map((image) => ({ ...image, prompt: (job.params || {}).prompt })));
  if (!images.length) return el("p", { class: "empty" }, "No images yet.");
  return el("div", { class: "gallery", id: "gallery" }, images.map(thumb));
}

export async function imagesPage() {
  const models = (await api("GET", "/api/v1/models")).items.filter((m) => m.kind === "image");
  const model = el("select", { id: "image-model", "aria-label": "Model" },
    models.map((m) => el("option", { value: m.id, disabled: m.available === false, selected: m.id === "sketch-local" }, `${m.id}${m.available === false ? " (unavailable)" : ""}`)));
  const prompt = el("textarea", { id: "image-prompt", rows: 2, "aria-label": "Prompt", placeholder: "Describe the image" });
  const size = el("select", { id: "image-size", "aria-label": "Size" }, ["256", "512", "768", "1024"].map((s) => el("option", { value: s, selected: s === "512" }, `${s}×${s}`)));
  const steps = el("input", { id: "image-steps", type: "number", min: 1, max: 50, value: 12, "aria-label": "Steps" });
  const quote = el("div", { id: "image-quote", class: "muted" });
  const live = el("div", { id: "image-live" });
  const shelf = el("div", {}, await gallery());
  const body = () => ({ prompt: prompt.value, model: model.value, width: Number(size.value), height: Number(size.value), steps: Number(steps.value) });
  const start = async () => {
    const picture = el("img", { alt: "live preview", class: "preview", hidden: true, "data-testid": "preview" });
    const panel = jobPanel({
      renderProgress: (data) => { if (data.preview_url) { picture.src = data.preview_url; picture.hidden = false; } },
      onEnd: async (event, data, out) => {
        for (const image of (data.result && data.result.images) || []) out.append(thumb(image));
        shelf.replaceChildren(await gallery());
      },
    });
    panel.node.append(picture);
    live.replaceChildren(panel.node);
    await startJob(PATH, body(), panel, { streams: false });
  };
  show(el("h1", {}, "Images"),
    el("section", { class: "card" }, el("div", { class: "toolbar" }, el("label", {}, "Model ", model), el("label", {}, "Size ", size), el("label", {}, "Steps ", steps)), prompt,
      el("div", { class: "toolbar" },
        el("button", { id: "image-preview", on: { click: async () => quote.replaceChildren(await preview(PATH, body())) } }, "Preview cost"),
        el("button", { class: "primary", id: "image-start", on: { click: start } }, "Generate"), quote)),
    live, el("h2", {}, "Your images"), shelf);
}
