// System status: the Odin link, the manager and its sessions, live counters and rates,
// and the mesh graph. The manager's status is polled (every second while this page is
// open, every few seconds otherwise, for the banners), and also right after the live
// stream reports a session change.
import {api} from './api.js';
import {$, h, s, fmtNum, fmtDuration, fmtAgo, fmtFull} from './dom.js';
import {state, emitTopic} from './store.js';
import {drawMesh} from './graph.js';
import {banner, recovered, hide} from './banner.js';

const FAST_MS = 1000;
const SLOW_MS = 4000;
const RATE_POINTS = 60;
const SESSIONS_SHOWN = 200;

let active = false;
let timer = null;
let inFlight = false;
let last = null; // the last status document
let lastAt = 0;
let prevSample = null; // {t, sent, received, dials}
const rates = []; // {sent, received} per second
let everConnected = false;
let meshAvailable = true;
let lastMeshAt = 0;
let mesh = null;
let drawnSig = null;
let managerDown = false;
let odinDown = false;
let running = false;

// Odin's state as a person reads it: the manager says connected / connecting / idle;
// "connecting" after the link was up (or with sessions in backoff) is a reconnect.
export function odinView(st) {
	const o = st.odin || {};
	const stats = st.stats || {};
	if (o.state === 'connected') {
		return {label: 'Connected', cls: 'ok', key: 'connected'};
	}
	if (o.state === 'idle') {
		return {label: 'Idle (no sessions yet)', cls: 'idle', key: 'idle'};
	}
	const re = everConnected || stats.backoff > 0 || (st.clients || []).some((c) => c.reconnects > 0);
	return re ? {label: 'Reconnecting', cls: 'warn', key: 'reconnecting'} : {label: 'Connecting', cls: 'warn', key: 'connecting'};
}

function kv(dl, rows) {
	dl.replaceChildren(...rows.flatMap(([k, v, cls]) => [h('dt', {}, k), h('dd', {class: cls}, v)]));
}

function pill(el, text, cls) {
	el.textContent = text;
	el.className = `pill pill-${cls}`;
}

function rtt(o) {
	if (typeof o.rtt_ms === 'number') {
		return `${o.rtt_ms.toFixed(o.rtt_ms < 10 ? 1 : 0)} ms`;
	}
	if (typeof o.rtt_us === 'number') {
		return `${(o.rtt_us / 1000).toFixed(1)} ms`;
	}
	return null;
}

function renderOdin(st) {
	const o = st.odin || {};
	const v = odinView(st);
	pill($('odin-state'), v.label, v.cls);
	$('odin-state').dataset.state = v.key;
	const r = rtt(o);
	kv($('odin-kv'), [
		['Address', o.address || '—', 'mono'],
		['Transport', o.transport || '—'],
		['Dialled', o.dialled || '—', 'mono'],
		['Round trip', r || 'not reported', r ? null : 'muted'],
		['Links up', `${fmtNum(st.stats.links_up)} of ${fmtNum(st.stats.links)}`],
	]);
}

function renderManager(st) {
	pill($('mgr-state'), 'Reachable', 'ok');
	$('mgr-state').dataset.state = 'reachable';
	const be = st.backend || {};
	kv($('mgr-kv'), [
		['Version', st.version || '—'],
		['Up for', typeof st.uptime_s === 'number' ? fmtDuration(st.uptime_s) : '—'],
		['Link mode', st.link_mode || '—'],
		['Backend', be.reachable ? 'reachable' : `unreachable${be.error ? `: ${be.error}` : ''}`, be.reachable ? null : 'bad'],
		['Events queued', `${fmtNum(be.queued_events)}${be.dropped_events ? `, ${fmtNum(be.dropped_events)} dropped` : ''}`],
	]);
}

function renderManagerDown(msg) {
	pill($('mgr-state'), 'Unreachable', 'bad');
	$('mgr-state').dataset.state = 'unreachable';
	kv($('mgr-kv'), [['Problem', msg, 'bad']]);
	pill($('odin-state'), 'Unknown', 'idle');
	$('odin-state').dataset.state = 'unknown';
}

function counter(label, value, sub, id) {
	return h('div', {class: 'counter', dataset: {counter: id}},
		h('span', {class: 'counter-value'}, value),
		h('span', {class: 'counter-label'}, label),
		sub ? h('span', {class: 'counter-sub muted'}, sub) : null);
}

function rateText(x) {
	return x >= 10 ? x.toFixed(0) : x.toFixed(1);
}

function renderCounters(st) {
	const t = st.stats || {};
	const r = rates[rates.length - 1] || {sent: 0, received: 0};
	const inProgress = (t.connecting || 0) + (t.attaching || 0) + (t.scanning || 0) + (t.new || 0);
	$('counters').replaceChildren(
		counter('Sessions ready', `${fmtNum(t.ready)} / ${fmtNum(t.total)}`,
			[inProgress && `${inProgress} connecting`, t.backoff && `${t.backoff} in backoff`, t.failed && `${t.failed} failed`].filter(Boolean).join(', ') || 'all settled', 'sessions'),
		counter('Messages sent', fmtNum(t.messages_sent), `${rateText(r.sent)}/s now`, 'sent'),
		counter('Messages received', fmtNum(t.messages_received), `${rateText(r.received)}/s now`, 'received'),
		counter('Dials', fmtNum(t.dials), `peak ${fmtNum(t.peak_connect_rate)}/s of ${fmtNum(t.connect_rate_limit)}/s`, 'dials'),
		counter('Directory entries', fmtNum(t.directory_entries), 'mesh users in the manager\'s copies', 'directory'),
		counter('Waiting to send', fmtNum(t.pending_dispatch), 'messages not yet handed to a session', 'pending'));
	renderRateChart();
}

function renderRateChart() {
	const svg = $('rate-chart');
	const W = 300, H = 60;
	const peak = Math.max(0, ...rates.map((r) => Math.max(r.sent, r.received)));
	const max = Math.max(1, peak);
	const line = (key) => rates.map((r, i) => {
		const x = W - (rates.length - 1 - i) * (W / (RATE_POINTS - 1));
		const y = H - 4 - (r[key] / max) * (H - 10);
		return `${i ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
	}).join(' ');
	const area = rates.length > 1 ? `${line('sent')} L${W} ${H} L${W - (rates.length - 1) * (W / (RATE_POINTS - 1))} ${H} Z` : '';
	svg.replaceChildren(
		s('line', {class: 'rate-grid', x1: 0, y1: H - 4, x2: W, y2: H - 4}),
		rates.length > 1 ? s('path', {class: 'rate-area', d: area}) : null,
		rates.length > 1 ? s('path', {class: 'rate-sent', d: line('sent')}) : null,
		rates.length > 1 ? s('path', {class: 'rate-received', d: line('received')}) : null);
	const r = rates[rates.length - 1] || {sent: 0, received: 0};
	$('rate-caption').replaceChildren(
		h('span', {class: 'key key-sent', 'aria-hidden': 'true'}), 'sent ', h('strong', {}, `${rateText(r.sent)}/s`),
		h('span', {class: 'key key-received', 'aria-hidden': 'true'}), 'received ', h('strong', {}, `${rateText(r.received)}/s`),
		` · peak ${rateText(peak)}/s over the last minute`);
}

const STATE_CLASS = {ready: 'ok', backoff: 'warn', connecting: 'warn', attaching: 'warn', scanning: 'warn', new: 'idle', failed: 'bad', disconnecting: 'idle', disconnected: 'idle'};

function renderSessions(st) {
	const clients = [...(st.clients || [])].sort((a, b) => a.user_id.localeCompare(b.user_id));
	const rows = clients.slice(0, SESSIONS_SHOWN).map((c) => h('tr', {dataset: {session: c.user_id}},
		h('th', {scope: 'row'}, c.user_name && c.user_name !== c.user_id ? `${c.user_name} (${c.user_id})` : c.user_id),
		h('td', {}, h('span', {class: ['pill', `pill-${STATE_CLASS[c.state] || 'idle'}`]}, c.state)),
		h('td', {}, c.connected_since ? h('time', {datetime: new Date(c.connected_since).toISOString(), title: fmtFull(c.connected_since)}, fmtAgo(c.connected_since)) : '—'),
		h('td', {class: 'num'}, fmtNum(c.reconnects)),
		h('td', {class: 'num'}, fmtNum(c.sent)),
		h('td', {class: 'num'}, fmtNum(c.received)),
		// The last error stays after a recovery: red only while the session is not ready.
		h('td', {class: ['error-cell', c.last_error && c.state !== 'ready' ? 'bad' : 'muted']}, c.last_error || 'none')));
	if (!rows.length) {
		rows.push(h('tr', {}, h('td', {colspan: 7, class: 'muted'}, 'No sessions: nobody has registered yet.')));
	}
	$('sessions').replaceChildren(...rows);
	const more = clients.length - SESSIONS_SHOWN;
	$('sessions-more').hidden = more <= 0;
	$('sessions-more').textContent = more > 0 ? `and ${fmtNum(more)} more sessions (the first ${SESSIONS_SHOWN} by id are shown)` : '';
}

function webUserSet(st) {
	const set = new Set((st && st.clients || []).map((c) => c.user_id));
	for (const c of state.contacts.values()) {
		if (c.web) {
			set.add(c.user_id);
		}
	}
	if (state.me) {
		set.add(state.me.username);
	}
	return set;
}

function renderMesh() {
	const box = $('mesh-graph');
	if (!mesh) {
		box.replaceChildren(h('p', {class: 'muted graph-empty'}, meshAvailable ? 'Loading the mesh…' : 'This backend does not serve the mesh topology (GET /api/mesh).'));
		$('mesh-sub').textContent = '';
		$('mesh-list').replaceChildren();
		return;
	}
	const users = mesh.users || [];
	const nodes = mesh.nodes || [];
	const web = webUserSet(last);
	const v = last ? odinView(last) : {key: 'unknown', label: 'unknown'};
	const home = new Map();
	for (const u of users) {
		if (web.has(u.user_id) && u.home) {
			home.set(u.home, (home.get(u.home) || 0) + 1);
		}
	}
	// The gateway is where the web users are attached (the manager dials Odin).
	let gateway = null;
	for (const [addr, n] of home) {
		if (!gateway || n > home.get(gateway)) {
			gateway = addr;
		}
	}
	// Redrawn only when something shown changed: a redraw every second would restart
	// the link animation and close any tooltip.
	const sig = JSON.stringify([nodes.map((n) => [n.address, n.name, n.neighbours]),
		users.map((u) => [u.user_id, u.user_name, u.home, u.presence]), v.key, [...web].sort(),
		box.clientWidth < 560]);
	if (sig !== drawnSig || !box.querySelector('svg.graph')) {
		drawnSig = sig;
		drawMesh(box, mesh, {gateway, odinState: last ? last.odin.state : null, odinLabel: v.label, webUsers: web, me: state.me && state.me.username});
	}
	const online = users.filter((u) => u.presence === 'online').length;
	$('mesh-sub').textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${users.length} user${users.length === 1 ? '' : 's'} (${online} online)`;
	const names = new Map(nodes.map((n) => [n.address, n.name || n.address]));
	$('mesh-list').replaceChildren(...nodes.map((n) => {
		const here = users.filter((u) => u.home === n.address).map((u) => u.user_name || u.user_id);
		return h('li', {},
			h('strong', {}, n.name || n.address), ` (${n.address})`,
			`: linked to ${(n.neighbours || []).map((a) => names.get(a) || a).join(', ') || 'nothing'}`,
			`; users: ${here.join(', ') || 'none'}`);
	}));
}

async function fetchMesh() {
	try {
		mesh = await api('GET', '/api/mesh');
		meshAvailable = true;
		let changed = false;
		for (const n of mesh.nodes || []) {
			if (state.nodeNames.get(n.address) !== n.name) {
				state.nodeNames.set(n.address, n.name);
				changed = true;
			}
		}
		if (changed) {
			emitTopic('contacts');
		}
	} catch (e) {
		if (e.status === 404) {
			meshAvailable = false;
		}
		if (e.status !== 503) {
			mesh = null;
		}
	}
	lastMeshAt = Date.now();
}

function sample(st) {
	const now = performance.now();
	const t = st.stats || {};
	if (prevSample && now > prevSample.t) {
		const dt = (now - prevSample.t) / 1000;
		rates.push({
			sent: Math.max(0, (t.messages_sent - prevSample.sent) / dt),
			received: Math.max(0, (t.messages_received - prevSample.received) / dt),
		});
		while (rates.length > RATE_POINTS) {
			rates.shift();
		}
	}
	prevSample = {t: now, sent: t.messages_sent || 0, received: t.messages_received || 0};
}

function updateBanners(st, err) {
	if (err) {
		if (err.code === 'manager_unreachable') {
			managerDown = true;
			hide('odin');
			odinDown = false;
			banner('manager', 'error', 'The Bluetooth manager is not answering.', 'Messages wait or fail until it is back; retrying.');
		}
		return;
	}
	if (managerDown) {
		managerDown = false;
		recovered('manager', 'The Bluetooth manager is back.', '');
	}
	const v = odinView(st);
	// A first connect is not an outage: only a link that was up (or sessions in
	// backoff) counts.
	const down = v.key === 'reconnecting' && (st.stats.total || 0) > 0;
	if (down) {
		odinDown = true;
		banner('odin', 'warn', 'Odin, the mesh gateway, is unreachable.', `${v.label}… messages to the mesh wait until the link is back.`);
	} else if (odinDown) {
		odinDown = false;
		recovered('odin', 'Odin is connected again.', '');
	}
}

export async function pollStatus() {
	if (inFlight || !state.me) {
		return;
	}
	inFlight = true;
	try {
		const st = await api('GET', '/api/bluetooth/manager/status');
		last = st;
		lastAt = Date.now();
		if (st.odin && st.odin.state === 'connected') {
			everConnected = true;
		}
		sample(st);
		updateBanners(st, null);
		const mine = (st.clients || []).find((c) => c.user_id === state.me.username);
		if (mine && state.myBluetooth !== mine.state) {
			state.myBluetooth = mine.state;
			emitTopic('me');
		}
		if (active) {
			renderOdin(st);
			renderManager(st);
			renderCounters(st);
			renderSessions(st);
		}
		if (Date.now() - lastMeshAt > (active ? 2000 : 15000)) {
			await fetchMesh();
		}
		if (active) {
			renderMesh();
		}
	} catch (e) {
		if (e.status === 503 || e.status === 502) {
			updateBanners(null, e.code === 'manager_unreachable' || e.status === 502 ? {code: 'manager_unreachable'} : e);
			if (active) {
				renderManagerDown(e.message);
			}
		}
	} finally {
		inFlight = false;
	}
	if (active) {
		const stale = !lastAt || Date.now() - lastAt > 2500;
		$('status-updated').textContent = lastAt ? `Updated ${fmtAgo(lastAt)} · refreshes every second` : '';
		$('view-status').classList.toggle('stale', stale && !!lastAt);
	}
}

function schedule() {
	clearTimeout(timer);
	if (!running) {
		return;
	}
	timer = setTimeout(async () => {
		await pollStatus();
		schedule();
	}, active ? FAST_MS : SLOW_MS);
}

export function startStatus() {
	running = true;
	pollStatus().finally(schedule);
}

export function stopStatus() {
	running = false;
	clearTimeout(timer);
	last = null;
	mesh = null;
	drawnSig = null;
	everConnected = false;
	managerDown = odinDown = false;
	rates.length = 0;
	prevSample = null;
}

export function setStatusActive(yes) {
	const was = active;
	active = yes;
	if (yes && !was) {
		lastMeshAt = 0;
		if (last) {
			renderOdin(last);
			renderManager(last);
			renderCounters(last);
			renderSessions(last);
		}
		renderMesh();
		pollStatus().finally(schedule);
	} else {
		schedule();
	}
}

// A session changed (from the live stream): refresh soon rather than at the next tick.
let soon = null;

export function statusSoon() {
	if (soon || !running) {
		return;
	}
	soon = setTimeout(() => {
		soon = null;
		pollStatus();
	}, 150);
}
