// One study: both lights, AI outputs with the synthetic-data disclaimer, magma images, timeline,
// the report form and the viewer link; refreshed live when the study changes.
"use strict";

(() => {
  const root = document.getElementById("study");
  const uid = root.dataset.studyUid;
  // A UID names a study only within its hospital: the page carries which one (?hospital_id=).
  const hospital = new URLSearchParams(location.search).get("hospital_id");
  const path = "/studies/" + encodeURIComponent(uid);
  const scope = hospital ? "?hospital_id=" + encodeURIComponent(hospital) : "";
  let imagesShown = 0;

  function text(id, value) { document.getElementById(id).textContent = value ?? ""; }

  function viewerLink() {
    const template = root.dataset.viewerTemplate;
    const link = document.getElementById("viewer");
    if (!template) return;
    link.href = template.replaceAll("{study_uid}", encodeURIComponent(uid))
      .replaceAll("{dicomweb}", encodeURIComponent(location.origin + "/dicomweb"));
    link.hidden = false;
  }

  /** Same-origin images need the token, so they are fetched; presigned (MinIO) links are used as they are. */
  async function image(url, alt) {
    const img = document.createElement("img");
    img.alt = alt;
    const target = new URL(url, location.href);
    if (target.origin === location.origin) {
      const response = await MDD.api(target.pathname + target.search);
      if (!response.ok) return null;  // not stored (yet): show what exists
      img.src = URL.createObjectURL(await response.blob());
    } else {
      img.src = url;
    }
    return img;
  }

  async function showImages(thumbnails) {
    if (thumbnails.length === imagesShown) return;
    imagesShown = thumbnails.length;
    const figures = [];
    for (const view of thumbnails) {
      const name = [view.laterality, view.view_position].filter(Boolean).join(" ") || view.sop_instance_uid;
      const figure = document.createElement("figure");
      for (const [url, label] of [[view.magma_url, "magma"], [view.crop_url, "recorte / crop"]]) {
        const img = url ? await image(url, name + " — " + label) : null;
        if (img) figure.append(img);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = name;
      figure.append(caption);
      figures.push(figure);
    }
    document.getElementById("views").replaceChildren(...figures);
  }

  let mosaicShown = false;

  /** The mosaic the notify service keeps (the one the PACS receives), once the study has results. */
  async function showMosaic(study) {
    if (mosaicShown || !study.triage_light) return;
    const response = await MDD.api(path + "/mosaic" + scope);
    if (!response.ok) return;  // not built yet: the next change of the study tries again
    const img = document.createElement("img");
    img.id = "mosaic-image";
    img.alt = "Mosaico de las cuatro vistas con las marcas del modelo / mosaic of the four views with the model's marks";
    img.src = URL.createObjectURL(await response.blob());
    document.getElementById("mosaic").replaceChildren(img);
    mosaicShown = true;
  }

  function showAi(study) {
    const rows = (study.breasts || []).map((breast) => {
      const tr = document.createElement("tr");
      for (const value of [breast.laterality, Number(breast.malignancy_score).toFixed(3), breast.birads, breast.density,
        (breast.views_used || []).join(", ")]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      return tr;
    });
    document.querySelector("#breasts tbody").replaceChildren(...rows);
    document.getElementById("breasts").hidden = rows.length === 0;
    document.getElementById("no-ai").hidden = rows.length > 0;
    text("model", study.model_name
      ? `Modelo / model: ${study.model_name} ${study.model_version} · entrenado con / trained on: ${study.model_trained_on}` +
        (study.model_trained ? "" : " (sin entrenar / untrained)") + (study.disclaimer ? " · " + study.disclaimer : "")
      : "");
  }

  function showTimeline(events) {
    const rows = events.map((event) => {
      const tr = document.createElement("tr");
      for (const value of [MDD.when(event.occurred_at), event.event_type, event.producer]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      return tr;
    });
    document.querySelector("#timeline tbody").replaceChildren(...rows);
  }

  async function load() {
    const response = await MDD.api(path + scope);
    if (!response.ok) {
      document.getElementById("error").textContent = (await response.json()).detail || String(response.status);
      return;
    }
    const study = await response.json();
    text("accession", study.accession_number || study.study_uid);
    text("hospital", study.hospital_id);
    text("study-state", study.state_label);
    document.getElementById("status-light").replaceChildren(MDD.light("Semáforo de estado / status light", study.status_light));
    document.getElementById("triage-light").replaceChildren(MDD.light("Semáforo de triaje / triage light", study.triage_light));
    text("triage-reason", study.triage_reason);
    if (study.patient) {
      document.getElementById("patient-row").hidden = false;
      text("patient", [study.patient.patient_name, study.patient.patient_id, study.patient.curp].filter(Boolean).join(" · "));
    }
    showAi(study);
    showTimeline(study.events);
    await showMosaic(study);
    await showImages(study.thumbnails || []);
  }

  document.getElementById("report").addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const result = document.getElementById("report-result");
    const response = await MDD.api(path + "/report" + scope, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ birads: Number(data.get("birads")), text: data.get("text") || "" }),
    });
    const body = await response.json();
    if (response.ok) {
      result.className = "ok";
      result.textContent = `Reporte enviado / report sent (BI-RADS ${body.birads}, ${body.reporter})`;
    } else {
      result.className = "error";
      result.textContent = "Reporte rechazado / report rejected: " + JSON.stringify(body.detail);
    }
  });

  MDD.signIn(async () => {
    viewerLink();
    MDD.stream((study) => { if (study.study_uid === uid && (!hospital || study.hospital_id === hospital)) load().catch(() => {}); });
    await load();
  });
})();
