"use strict";
// SpacePanda dashboard: reads this node's admin API with the session cookie and follows
// /v1/events. Every value from the API goes into the page as text (textContent), never HTML.
(() => {
  const POLL_MS = 2000;
  const CHANNELS_MS = 15000;
  const KEEP_MESSAGES = 12;
  const PAGE = 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    node: null, peers: [], dht: null, ready: null,
    channels: new Map(),   // channel_id -> channel JSON
    messages: new Map(),   // channel_id -> [message], oldest first
    names: new Map(),      // peer_id -> display name (from channel members)
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function short(pid) {
    const s = String(pid || "?");
    return s.length > 16 ? s.slice(0, 10) + "…" + s.slice(-4) : s;
  }

  function label(pid) {
    return state.names.get(pid) || short(pid);
  }

  function duration(seconds) {
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d${String(h).padStart(2, "0")}h`;
    if (h) return `${h}h${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m${String(s).padStart(2, "0")}s`;
    return `${s}s`;
  }

  function rtt(ms) {
    return typeof ms === "number" ? `${ms.toFixed(ms < 10 ? 2 : 1)} ms` : "–";
  }

  function clock(unixSeconds) {
    const d = new Date(unixSeconds * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  async function get(path) {
    const resp = await fetch(path, {
      credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store",
    });
    if (resp.status === 401) {
      location.assign("/");  // the session is gone (token rotated): sign in again
      throw new Error("signed out");
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    return { ok: resp.ok, status: resp.status, body };
  }

  function rows(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      dl.append(el("dt", {}, k), v instanceof Node ? el("dd", {}, v) : el("dd", {}, v));
    }
  }

  // ---- this node ---------------------------------------------------------------------------

  function renderNode() {
    const n = state.node;
    if (!n) return;
    $("node-name").textContent = label(n.peer_id) === short(n.peer_id) ? "" : label(n.peer_id);
    document.title = `SpacePanda ${short(n.peer_id)}`;
    const addrs = el("div", { class: "mono" });
    for (const a of n.addrs || []) addrs.append(el("div", {}, a));
    const ready = state.ready;
    rows($("node-info"), [
      ["Peer ID", el("span", { class: "mono", id: "node-id" }, n.peer_id)],
      ["Version", `${n.version} (commit ${String(n.commit || "unknown").slice(0, 12)})`],
      ["Uptime", duration(n.uptime_s)],
      ["Ready", ready ? (ready.reason || ready.detail || "") : "…"],
      ["Addresses", addrs],
    ]);
    const status = $("status");
    if (ready && ready.status === "ready") {
      status.textContent = "ready"; status.className = "pill ok";
    } else if (ready) {
      status.textContent = ready.state || "not ready"; status.className = "pill warn";
    }
  }

  // ---- peers -------------------------------------------------------------------------------

  function renderPeers() {
    const body = $("peers").tBodies[0];
    body.replaceChildren();
    const now = Date.now() / 1000;
    const peers = [...state.peers].sort((a, b) => a.peer_id.localeCompare(b.peer_id));
    for (const p of peers) {
      body.append(el("tr", { "data-peer": p.peer_id },
        el("td", { title: p.peer_id }, label(p.peer_id),
          state.names.has(p.peer_id) ? el("span", { class: "sub mono" }, short(p.peer_id)) : null),
        el("td", {}, p.direction === "inbound" ? "in" : "out"),
        el("td", { class: "rtt" }, rtt(p.rtt_ms)),
        el("td", {}, duration(now - p.connected_since)),
        el("td", { class: "mono addr" }, p.addr)));
    }
    if (!peers.length) {
      body.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "no connected peers")));
    }
    $("peer-count").textContent = `(${peers.length})`;
  }

  // ---- mesh graph --------------------------------------------------------------------------

  function renderMesh() {
    const g = $("mesh");
    g.replaceChildren();
    if (!state.node) return;
    const me = state.node.peer_id;
    const connected = new Map(state.peers.map((p) => [p.peer_id, p]));
    const known = new Set();
    for (const c of state.channels.values()) {
      for (const m of c.members || []) {
        if (m.peer_id !== me && !connected.has(m.peer_id)) known.add(m.peer_id);
      }
    }
    const others = [...connected.keys(), ...known].sort();
    const n = others.length;
    const cx = 210, cy = n > 2 ? 150 : 190, r = 120;
    const spot = new Map();
    others.forEach((pid, i) => {
      // One or two peers fan out above this node; more go round it.
      const angle = n <= 2
        ? -Math.PI / 2 + (n === 1 ? 0 : (i === 0 ? -0.7 : 0.7))
        : -Math.PI / 2 + (2 * Math.PI * i) / n;
      spot.set(pid, [cx + r * Math.cos(angle), cy + r * Math.sin(angle)]);
    });
    for (const pid of others) {
      const [x, y] = spot.get(pid);
      const kind = connected.has(pid) ? "connected" : "known";
      g.append(svg("line", { x1: cx, y1: cy, x2: x, y2: y, class: kind }));
      if (kind === "connected") {
        // The RTT beside the middle of the link, on its outer side.
        const dx = x - cx, dy = y - cy, len = Math.hypot(dx, dy) || 1;
        const side = dx >= 0 ? 1 : -1;
        const t = svg("text", { x: (cx + x) / 2 + (side * -dy / len) * 16,
                                y: (cy + y) / 2 + (side * dx / len) * 16 + 3, class: "rtt" });
        t.textContent = rtt(connected.get(pid).rtt_ms);
        g.append(t);
      }
    }
    const node = (pid, x, y, kind, radius) => {
      const c = svg("circle", { cx: x, cy: y, r: radius, class: kind, "data-peer": pid });
      const title = svg("title", {});
      title.textContent = pid;
      c.append(title);
      const t = svg("text", { x, y: y + radius + 13, class: "name" });
      t.textContent = label(pid);
      g.append(c, t);
    };
    for (const pid of others) {
      const [x, y] = spot.get(pid);
      node(pid, x, y, connected.has(pid) ? "connected" : "known", 10);
    }
    node(me, cx, cy, "self", 15);
    fit(g);
  }

  function fit(g) {
    // Frame the drawing (at least the default size), so few peers do not leave it lopsided.
    try {
      const b = g.getBBox();
      const w = Math.max(420, b.width + 40), h = Math.max(240, b.height + 40);
      g.setAttribute("viewBox",
        `${b.x + b.width / 2 - w / 2} ${b.y + b.height / 2 - h / 2} ${w} ${h}`);
    } catch (_) { /* not rendered (hidden): keep the default frame */ }
  }

  // ---- DHT ---------------------------------------------------------------------------------

  function bootstrapText(b) {
    if (!b) return "–";
    if (b.state === "bootstrap_node") return "bootstrap node (nothing to join)";
    if (b.state === "joined") {
      return `joined after ${b.attempts} attempt(s)` +
        (b.joined_after_s !== null ? ` in ${b.joined_after_s.toFixed(1)} s` : "");
    }
    let text = `joining: ${b.attempts} attempt(s), ${b.failures} failed`;
    if (b.last_error_detail) text += `; last: ${b.last_error_detail}`;
    if (b.next_retry_in_s !== null) text += `; next in ~${b.next_retry_in_s} s`;
    return text;
  }

  function renderDht() {
    const d = state.dht;
    if (!d) return;
    const lk = d.lookups || {};
    const drops = Object.entries(d.drops || {}).filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, n]) => `${k} ${n}`).join(", ");
    const buckets = (d.buckets || []).filter((n) => n > 0).join(" ");
    const mesh = d.mesh || {};
    rows($("dht"), [
      ["Ready", el("span", { id: "dht-ready" }, d.ready ? "yes" : "no")],
      ["Bootstrap", bootstrapText(d.bootstrap)],
      ["Contacts", el("span", { id: "dht-contacts" }, d.contacts)],
      ["Buckets", buckets || "–"],
      ["Records", `${d.records} (${((d.record_bytes || 0) / 1024).toFixed(1)} KiB)`],
      ["Lookups", `${lk.total || 0} (${lk.found || 0} found, ${lk.missed || 0} missed)` +
        (typeof lk.mean_rounds === "number" ? `, ${lk.mean_rounds.toFixed(1)} rounds` : "")],
      ["Mesh dials", `${mesh.dials || 0} (${mesh.dial_failures || 0} failed)`],
      ["Drops", drops || "none"],
    ]);
  }

  // ---- channels ----------------------------------------------------------------------------

  function addMessage(cid, m) {
    const list = state.messages.get(cid) || [];
    if (!list.some((x) => x.message_id === m.message_id)) {
      list.push(m);
      list.sort((a, b) => a.received_at - b.received_at);
    }
    state.messages.set(cid, list.slice(-KEEP_MESSAGES));
  }

  function renderChannels() {
    const box = $("channels");
    box.replaceChildren();
    const channels = [...state.channels.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const c of channels) {
      const members = el("ul", { class: "members" });
      for (const m of c.members || []) {
        members.append(el("li", { class: m.role === "admin" ? "admin" : "", title: m.peer_id },
          m.display_name || short(m.peer_id), m.role === "admin" ? " ★" : ""));
      }
      const msgs = el("ul", { class: "messages" });
      for (const m of state.messages.get(c.channel_id) || []) {
        msgs.append(el("li", { "data-message": m.message_id },
          el("span", { class: "when" }, clock(m.sent_at)),
          el("span", { class: "who" }, m.sender_name || label(m.sender)),
          el("span", { class: "text" }, m.text)));
      }
      if (!msgs.children.length) msgs.append(el("li", { class: "empty" }, "no messages yet"));
      box.append(el("article", { class: "channel", "data-channel": c.channel_id },
        el("h3", {}, `# ${c.name} `,
          el("span", { class: "muted" },
            `epoch ${c.epoch} · ${(c.members || []).length} members · ${c.status}`)),
        members, msgs));
    }
    if (!channels.length) box.append(el("p", { class: "empty" }, "not in any channel"));
    $("channel-count").textContent = `(${channels.length})`;
  }

  async function loadMessages(cid) {
    let after = "0";
    let all = [];
    for (;;) {
      const r = await get(`/v1/channels/${cid}/messages?after=${after}&limit=${PAGE}`);
      if (!r.ok || !r.body) return;
      all = all.concat(r.body.messages).slice(-KEEP_MESSAGES);
      if (r.body.messages.length < PAGE) break;
      after = r.body.next;
    }
    for (const m of all) addMessage(cid, m);
  }

  async function refreshChannels(withMessages) {
    const r = await get("/v1/channels");
    if (!r.ok || !r.body) return;  // 503 while channels start
    const seen = new Set();
    for (const c of r.body.channels) {
      seen.add(c.channel_id);
      const isNew = !state.channels.has(c.channel_id);
      state.channels.set(c.channel_id, c);
      for (const m of c.members || []) if (m.display_name) state.names.set(m.peer_id, m.display_name);
      if (isNew || withMessages) await loadMessages(c.channel_id);
    }
    for (const cid of [...state.channels.keys()]) {
      if (!seen.has(cid)) { state.channels.delete(cid); state.messages.delete(cid); }
    }
    renderChannels();
    renderMesh();
  }

  // ---- polling and events ------------------------------------------------------------------

  async function poll() {
    const [node, peers, dht, ready] = await Promise.all(
      [get("/v1/node"), get("/v1/peers"), get("/v1/dht"), get("/readyz")]);
    if (node.ok) state.node = node.body;
    if (peers.ok) state.peers = peers.body.peers;
    state.dht = dht.ok ? dht.body : null;
    state.ready = ready.body;
    renderNode();
    renderPeers();
    renderMesh();
    renderDht();
  }

  function follow() {
    const live = $("live");
    const es = new EventSource("/v1/events");
    let wasDown = false;
    es.addEventListener("open", () => {
      live.textContent = "events: live";
      live.className = "pill ok";
      if (wasDown) refreshChannels(true).catch(() => {});  // catch up on what was missed
      wasDown = false;
    });
    es.addEventListener("error", () => {
      live.textContent = "events: reconnecting";
      live.className = "pill warn";
      wasDown = true;
    });
    es.addEventListener("message", (e) => {
      const m = JSON.parse(e.data);
      addMessage(m.channel_id, m);
      renderChannels();
    });
    for (const name of ["member_added", "member_removed", "epoch", "invite", "invite_declined"]) {
      es.addEventListener(name, () => { refreshChannels(false).catch(() => {}); });
    }
  }

  async function loop(fn, ms) {
    for (;;) {
      try { await fn(); } catch (_) { /* shown as stale data; retried */ }
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }

  loop(poll, POLL_MS);
  loop(() => refreshChannels(false), CHANNELS_MS);
  follow();
})();
