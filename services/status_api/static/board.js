// The board: the day's studies, suspicious first, filtered, updated live over SSE; how long each has
// waited since acquisition against its hospital's deadline; a RED arriving is announced (banner, sound).
"use strict";

(() => {
  const RANK = { RED: 0, YELLOW: 1, GREEN: 2 };
  const DONE = new Set(["ready", "notified", "reported"]);
  const studies = new Map();
  const form = document.getElementById("filters");
  const table = document.getElementById("studies");
  const body = table.querySelector("tbody");
  const deadlines = JSON.parse(table.dataset.deadlines || "{}");
  let source = null;

  function deadlineOf(hospital) { return (deadlines.hospitals || {})[hospital] ?? deadlines.default ?? 60; }

  function minutes(value) { return value < 60 ? `${Math.floor(value)} min` : `${Math.floor(value / 60)} h ${Math.floor(value % 60)} min`; }

  /** Minutes since the study's first image arrived (its acquisition), against the hospital's deadline. */
  function waiting(study) {
    const span = document.createElement("span");
    const deadline = deadlineOf(study.hospital_id);
    const done = DONE.has(study.state);
    const end = done ? utc(study.updated_at) : new Date();
    const waited = Math.max(0, (end - utc(study.created_at)) / 60000);
    span.className = "waiting " + (waited > deadline ? "late" : waited > 0.75 * deadline ? "close" : "in-time") + (done ? " done" : "");
    span.textContent = (done ? "resultado en / results in " : "") + minutes(waited) + " / " + minutes(deadline);
    span.title = waited > deadline ? "Fuera de plazo / past the deadline" : "Dentro del plazo / within the deadline";
    return span;
  }

  function announce(study) {
    const banner = document.getElementById("red-alert");
    document.getElementById("red-alert-text").textContent =
      `Nuevo estudio ROJO / new RED study: ${study.accession_number || study.study_uid} (${study.hospital_id}) — ${study.triage_reason || ""}`;
    document.getElementById("red-alert-link").href = page(study);
    banner.hidden = false;
    document.title = "🔴 " + document.title.replace(/^🔴 /, "");
    if (document.getElementById("sound").checked) beep();
  }

  function beep() {
    try {
      const audio = new (window.AudioContext || window.webkitAudioContext)();
      for (const [start, frequency] of [[0, 880], [0.25, 660]]) {
        const tone = audio.createOscillator();
        tone.frequency.value = frequency;
        tone.connect(audio.destination);
        tone.start(audio.currentTime + start);
        tone.stop(audio.currentTime + start + 0.2);
      }
    } catch (err) { /* no audio device: the banner is enough */ }
  }

  document.getElementById("red-alert-close").addEventListener("click", () => {
    document.getElementById("red-alert").hidden = true;
    document.title = document.title.replace(/^🔴 /, "");
  });

  function filters() {
    const data = new FormData(form);
    return {
      hospital_id: (data.get("hospital_id") || "").trim(),
      triage_light: data.get("triage_light") || "",
      status_light: data.get("status_light") || "",
      state: data.get("state") || "",
      today: data.get("today") === "on",
    };
  }

  function midnight() { const d = new Date(); d.setHours(0, 0, 0, 0); return d; }

  function utc(value) { return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z"); }

  /** The same filters the API applies, for studies that arrive over the stream. */
  function matches(study, f) {
    if (f.hospital_id && study.hospital_id !== f.hospital_id) return false;
    if (f.triage_light && (study.triage_light || "NONE") !== f.triage_light) return false;
    if (f.status_light && study.status_light !== f.status_light) return false;
    if (f.state && study.state !== f.state) return false;
    if (f.today && utc(study.updated_at) < midnight()) return false;
    return true;
  }

  // A study is one hospital's: two hospitals may send the same Study Instance UID.
  function key(study) { return study.hospital_id + "/" + study.study_uid; }

  function page(study) {
    return "/board/studies/" + encodeURIComponent(study.study_uid) + "?hospital_id=" + encodeURIComponent(study.hospital_id);
  }

  function order(a, b) {
    const rank = (RANK[a.triage_light] ?? 3) - (RANK[b.triage_light] ?? 3);
    if (rank) return rank;
    return utc(b.updated_at) - utc(a.updated_at) || key(a).localeCompare(key(b));
  }

  function row(study) {
    const tr = document.createElement("tr");
    tr.dataset.studyUid = study.study_uid;
    tr.dataset.hospitalId = study.hospital_id;
    tr.dataset.triage = study.triage_light || "NONE";
    const link = document.createElement("a");
    link.href = page(study);
    link.textContent = study.accession_number || study.study_uid;
    const cells = [link, study.hospital_id, study.state_label, MDD.light("Semáforo de estado / status light", study.status_light),
      MDD.light("Semáforo de triaje / triage light", study.triage_light), study.triage_reason || "", waiting(study),
      MDD.when(study.updated_at)];
    for (const value of cells) {
      const td = document.createElement("td");
      td.append(value);
      tr.append(td);
    }
    tr.children[2].className = "state";
    tr.children[3].className = "status-light";
    tr.children[4].className = "triage-light";
    return tr;
  }

  function render(changed) {
    const rows = [...studies.values()].sort(order).map((study) => {
      const tr = row(study);
      if (key(study) === changed) tr.classList.add("changed");
      return tr;
    });
    body.replaceChildren(...rows);
    document.getElementById("empty").hidden = rows.length > 0;
    const hospitals = document.getElementById("hospitals");
    const known = new Set([...hospitals.options].map((o) => o.value));
    for (const study of studies.values()) {
      if (!known.has(study.hospital_id)) { hospitals.append(new Option(study.hospital_id)); known.add(study.hospital_id); }
    }
  }

  async function load() {
    const f = filters();
    const params = new URLSearchParams({ sort: "triage", limit: "500" });
    for (const key of ["hospital_id", "triage_light", "status_light", "state"]) if (f[key]) params.set(key, f[key]);
    if (f.today) params.set("updated_from", midnight().toISOString());
    const response = await MDD.api("/studies?" + params);
    if (!response.ok) {
      document.getElementById("error").textContent = "Error al leer estudios / could not read studies: " + response.status;
      return;
    }
    studies.clear();
    for (const study of (await response.json()).items) studies.set(key(study), study);
    render(null);
  }

  function onStudy(study) {
    const before = studies.get(key(study));
    if (study.triage_light === "RED" && (!before || before.triage_light !== "RED")) announce(study);
    if (matches(study, filters())) studies.set(key(study), study);
    else studies.delete(key(study));
    render(key(study));
  }

  form.addEventListener("change", () => load().catch(() => {}));
  form.addEventListener("submit", (e) => { e.preventDefault(); load().catch(() => {}); });

  setInterval(() => { if (studies.size) render(null); }, 30000);  // the waiting clocks move on

  MDD.signIn(async () => {
    if (source) source.close();
    source = MDD.stream(onStudy);
    await load();
  });
})();
