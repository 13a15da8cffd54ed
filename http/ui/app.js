// The hamdb page: query a collection by image, by code or with a random
// stored item, and see the nearest items as thumbnails. Everything comes from
// the HTTP API (docs/api.md). An API key, when the server asks for one, is
// kept in sessionStorage (the tab's own storage, gone when it closes) and sent only in the
// Authorization header; thumbnails are fetched with it and shown from blob
// URLs, so the key never appears in a URL.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem('hamdb-key') || '',
  collections: new Map(),  // name -> description
  blobUrls: [],            // revoked when a new answer replaces them
  generation: 0,           // a newer query makes older answers stale
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One API call; JSON in and out unless `body` is a Blob. Throws ApiError.
async function api(method, path, body, contentType) {
  const headers = {};
  if (state.key) headers['Authorization'] = 'Bearer ' + state.key;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob)) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  } else if (body instanceof Blob) {
    headers['Content-Type'] = contentType;
  }
  const resp = await fetch(path, { method, headers, body: payload });
  if (resp.status === 401) {
    $('key-form').hidden = false;
    throw new ApiError(401, 'unauthorized',
                       state.key ? 'the API key was refused; enter another' : 'this server needs an API key');
  }
  if (!resp.ok) {
    let code = 'http_' + resp.status, message = resp.statusText;
    try {
      const j = await resp.json();
      if (j && j.error) { code = j.error.code; message = j.error.message; }
    } catch (e) { /* not JSON */ }
    throw new ApiError(resp.status, code, message);
  }
  return resp;
}

// A thumbnail as a blob URL, or null when the item has none.
async function thumbnailUrl(collection, id) {
  try {
    const resp = await api('GET', `/collections/${encodeURIComponent(collection)}/items/${id}/thumbnail`);
    const url = URL.createObjectURL(await resp.blob());
    state.blobUrls.push(url);
    return url;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

function showError(e) {
  $('error').textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : String(e);
  $('error').hidden = false;
  $('status').textContent = '';
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; ++i; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function current() { return state.collections.get($('collection').value); }

function showFigures() {
  const c = current();
  if (!c) { $('figures').textContent = 'no collections'; return; }
  if (c.status === 'error') { $('figures').textContent = `unavailable: ${c.error}`; return; }
  const parts = [`${c.items.toLocaleString('en')} items`, `${c.bits} bits`, `index ${c.index}`,
                 `${formatBytes(c.index_memory_bytes)} index memory`, c.status];
  if (c.encoder) parts.push('encoder ' + c.encoder.split('/').pop());
  $('figures').textContent = parts.join(' · ');
  const canImage = Boolean(c.encoder && c.encoder_loaded);
  $('file').disabled = !canImage;
  $('drop-hint').textContent = canImage ? 'Drop an image here, or'
      : 'This collection has no encoder: search by code, or take a random item.';
}

async function loadCollections() {
  clearError();
  const resp = await api('GET', '/collections');
  const list = (await resp.json()).collections;
  const select = $('collection');
  const previous = select.value;
  state.collections.clear();
  select.textContent = '';
  for (const c of list) {
    state.collections.set(c.name, c);
    select.append(new Option(c.name, c.name));
  }
  if (state.collections.has(previous)) select.value = previous;
  showFigures();
}

async function refreshFigures() {
  const c = current();
  if (!c) return;
  const resp = await api('GET', `/collections/${encodeURIComponent(c.name)}`);
  state.collections.set(c.name, await resp.json());
  showFigures();
}

function labelText(c, label) {
  if (label === undefined || label === null) return '';
  const names = c && c.class_names;
  return names && label >= 0 && label < names.length ? `${label} (${names[label]})` : String(label);
}

function showQueryInfo(rows) {
  const dl = $('query-info');
  dl.textContent = '';
  for (const [term, value, cls] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    if (cls) dd.className = cls;
    if (term === 'OOD') dd.id = 'ood';
    dl.append(dt, dd);
  }
  dl.hidden = rows.length === 0;
}

// What the encoder made of a query image (the search answer's `query`).
function encoderRows(q) {
  return [
    ['Class', q.class_name !== undefined ? `${q.class_name} (${q.class})` : String(q.class)],
    ['Decoding', `${q.decoding}, distance ${q.distance_to_class} to the class code`],
    ['OOD', q.ood ? 'out of distribution' : 'no', q.ood ? 'ood' : ''],
    ['Confidence', q.confidence.toFixed(3)],
    ['Code', q.code],
  ];
}

// The same figures from a stored image item's metadata.
function storedRows(item) {
  const m = item.metadata || {};
  const rows = [['Item', String(item.id)]];
  if (m.class !== undefined) {
    rows.push(['Class', m.class_name !== undefined ? `${m.class_name} (${m.class})` : String(m.class)]);
    rows.push(['Decoding', `${m.exact ? 'ED' : 'MHD'}, distance ${m.distance} to the class code`]);
    rows.push(['OOD', m.ood ? 'out of distribution' : 'no', m.ood ? 'ood' : '']);
    rows.push(['Confidence', Number(m.confidence).toFixed(3)]);
  }
  if (item.label !== undefined) rows.push(['Label', labelText(current(), item.label)]);
  rows.push(['Code', item.code]);
  return rows;
}

function searchParams() {
  const k = Math.max(1, parseInt($('k').value, 10) || 10);
  return { k, mode: $('mode').value, with_metadata: true };
}

async function renderResults(c, answer, generation) {
  const grid = $('results');
  grid.textContent = '';
  const hits = answer.results;
  $('status').textContent = `${hits.length} nearest of ${c.items.toLocaleString('en')} in ` +
      `${answer.took_ms.toFixed(2)} ms · index ${answer.index}, mode ${answer.mode}` +
      (answer.exact ? ', exact' : ', approximate') + (answer.tie_break ? `, ties by ${answer.tie_break}` : '');
  const figures = hits.map((h) => {
    const fig = document.createElement('figure');
    fig.className = 'hit';
    fig.dataset.id = String(h.id);
    fig.dataset.distance = String(h.distance);
    fig.dataset.label = h.label === undefined ? '' : String(h.label);
    const holder = document.createElement('div');
    holder.className = 'no-thumb';
    holder.textContent = '…';
    const cap = document.createElement('figcaption');
    const m = h.metadata || {};
    const lines = [['distance', `d = ${h.distance}`],
                   ['label', h.label === undefined ? 'no label' : 'label ' + labelText(c, h.label)],
                   ['class', m.class_name !== undefined ? 'class ' + m.class_name : ''],
                   ['meta', `id ${h.id}` + (h.score !== undefined ? ` · score ${Number(h.score).toFixed(3)}` : '')]];
    for (const [cls, text] of lines) {
      if (!text) continue;
      const span = document.createElement('div');
      span.className = cls;
      span.textContent = text;
      cap.append(span);
    }
    fig.append(holder, cap);
    grid.append(fig);
    return [fig, holder, h];
  });
  await Promise.all(figures.map(async ([fig, holder, h]) => {
    const url = await thumbnailUrl(c.name, h.id);
    if (generation !== state.generation) return;
    if (!url) { holder.textContent = 'no thumbnail'; return; }
    const img = new Image();
    img.alt = `item ${h.id}`;
    img.src = url;
    holder.replaceWith(img);
  }));
  if (generation === state.generation) grid.dataset.ready = String(hits.length);
}

function startQuery() {
  clearError();
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
  $('results').textContent = '';
  delete $('results').dataset.ready;
  $('status').textContent = 'searching…';
  return ++state.generation;
}

function setQueryImage(url) {
  const img = $('query-image');
  if (url) { img.src = url; img.hidden = false; } else { img.removeAttribute('src'); img.hidden = true; }
}

async function searchImage(file) {
  const c = current();
  if (!c) return;
  const generation = startQuery();
  const local = URL.createObjectURL(file);
  state.blobUrls.push(local);
  setQueryImage(local);
  const p = searchParams();
  const qs = `k=${p.k}&mode=${encodeURIComponent(p.mode)}&with_metadata=true`;
  const type = file.type && file.type.startsWith('image/') ? file.type : 'image/png';
  const resp = await api('POST', `/collections/${encodeURIComponent(c.name)}/search?${qs}`, file, type);
  const answer = await resp.json();
  if (generation !== state.generation) return;
  showQueryInfo(answer.query ? encoderRows(answer.query) : []);
  await renderResults(c, answer, generation);
}

async function searchCode(code, rows, queryImageUrl) {
  const c = current();
  if (!c) return;
  const generation = state.generation;
  setQueryImage(queryImageUrl);
  showQueryInfo(rows);
  const body = Object.assign({ code }, searchParams());
  const resp = await api('POST', `/collections/${encodeURIComponent(c.name)}/search`, body);
  const answer = await resp.json();
  if (generation !== state.generation) return;
  await renderResults(c, answer, generation);
}

async function searchRandom() {
  const c = current();
  if (!c) return;
  const generation = startQuery();
  const resp = await api('GET', `/collections/${encodeURIComponent(c.name)}/sample`);
  const item = await resp.json();
  const url = await thumbnailUrl(c.name, item.id);
  if (generation !== state.generation) return;
  await searchCode(item.code, storedRows(item), url);
}

function guard(fn) {
  return (...args) => fn(...args).catch(showError);
}

function init() {
  $('collection').addEventListener('change', guard(async () => {
    startQuery();
    $('status').textContent = '';
    showQueryInfo([]);
    setQueryImage(null);
    await refreshFigures();
  }));
  $('file').addEventListener('change', guard(async (ev) => {
    if (ev.target.files.length) await searchImage(ev.target.files[0]);
  }));
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', guard(async (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    const file = ev.dataTransfer.files[0];
    if (file && !$('file').disabled) await searchImage(file);
  }));
  $('random').addEventListener('click', guard(searchRandom));
  $('code-form').addEventListener('submit', guard(async (ev) => {
    ev.preventDefault();
    startQuery();
    await searchCode($('code').value.trim(), [['Code', $('code').value.trim()]], null);
  }));
  $('key-form').addEventListener('submit', guard(async (ev) => {
    ev.preventDefault();
    state.key = $('key').value;
    sessionStorage.setItem('hamdb-key', state.key);
    $('key-form').hidden = true;
    await loadCollections();
  }));
  guard(loadCollections)();
}

init();
