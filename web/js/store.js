// The page's state: who is logged in, the contacts, and the conversations with their
// messages. Views subscribe with on(); the SSE stream and the API calls feed it.
import {api} from './api.js';

export const BROADCAST = 'broadcast';

// How far a message has got; a merge never moves a message back.
const RANK = {sending: 0, queued: 1, sent: 2, received: 2, delivered: 3, broadcast: 3, failed: 4};

export const state = {
	me: null, // {id, username, admin, created}
	myBluetooth: null, // my own session's state, from presence events
	contacts: new Map(), // user_id -> {user_id, name, web, presence, bluetooth, home}
	convs: new Map(), // conversation key (a user id or 'broadcast') -> Conv
	byId: new Map(), // message id -> message (every conversation)
	current: null, // the open conversation's key
	nodeNames: new Map(), // mesh node address -> its name (from /api/mesh)
};

const subs = new Map();

export function on(topic, fn) {
	if (!subs.has(topic)) {
		subs.set(topic, []);
	}
	subs.get(topic).push(fn);
}

function emit(topic, arg) {
	for (const fn of subs.get(topic) || []) {
		fn(arg);
	}
}

function newConv(key) {
	return {key, list: [], loaded: false, loading: null, next: null, unread: 0, lastAt: 0};
}

export function conv(key) {
	let c = state.convs.get(key);
	if (!c) {
		c = newConv(key);
		c.unread = unreadSaved()[key] || 0;
		state.convs.set(key, c);
	}
	return c;
}

export function convKeyOf(m) {
	if (m.to === BROADCAST) {
		return BROADCAST;
	}
	return m.from === state.me.username ? m.to : m.from;
}

function byTime(a, b) {
	return a.at - b.at || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

// ---- unread counts: kept per user in localStorage so a reload keeps them ----

function unreadKey() {
	return `blueq.unread.${state.me ? state.me.username.toLowerCase() : ''}`;
}

function unreadSaved() {
	try {
		return JSON.parse(localStorage.getItem(unreadKey()) || '{}') || {};
	} catch {
		return {};
	}
}

function unreadSave() {
	const o = {};
	for (const [k, c] of state.convs) {
		if (c.unread) {
			o[k] = c.unread;
		}
	}
	try {
		localStorage.setItem(unreadKey(), JSON.stringify(o));
	} catch {
		// private mode or full: counts just do not survive a reload
	}
}

export function totalUnread() {
	let n = 0;
	for (const c of state.convs.values()) {
		n += c.unread;
	}
	return n;
}

export function markRead(key) {
	const c = state.convs.get(key);
	if (c && c.unread) {
		c.unread = 0;
		unreadSave();
		emit('unread', key);
	}
}

// Whether a new message in this conversation is being seen right now.
let isVisible = () => false;

export function setVisibleCheck(fn) {
	isVisible = fn;
}

// ---- messages ----

let localSeq = 0;

function insert(c, m) {
	c.list.push(m);
	if (c.list.length > 1 && byTime(c.list[c.list.length - 2], m) > 0) {
		c.list.sort(byTime);
	}
	if (m.at > c.lastAt) {
		c.lastAt = m.at;
	}
}

function mergeInto(m, src) {
	let changed = false;
	if ((RANK[src.state] ?? 0) > (RANK[m.state] ?? 0)) {
		m.state = src.state;
		changed = true;
	}
	if (src.reason && m.reason !== src.reason && m.state === 'failed') {
		m.reason = src.reason;
		changed = true;
	}
	return changed;
}

// A message from the server (a history page, an event, a send's answer): added once,
// or merged into the copy we have. Returns the message object.
export function upsert(src, {live = false} = {}) {
	const known = state.byId.get(src.id);
	if (known) {
		if (mergeInto(known, src)) {
			emit('msg', known);
		}
		return known;
	}
	const key = convKeyOf(src);
	const c = conv(key);
	// My own message coming back (the stream can beat the send's answer): adopt the
	// oldest pending copy with the same text rather than showing it twice.
	if (src.from === state.me.username) {
		const pending = c.list.find((m) => !m.id && m.text === src.text);
		if (pending) {
			pending.id = src.id;
			state.byId.set(src.id, pending);
			mergeInto(pending, src);
			emit('msg', pending);
			return pending;
		}
	}
	const m = {
		key: `m-${src.id}`, id: src.id, from: src.from, to: src.to, text: src.text,
		state: src.state, reason: src.reason || null, at: src.at || Date.now(),
	};
	state.byId.set(m.id, m);
	insert(c, m);
	if (live && m.from !== state.me.username && !isVisible(key)) {
		c.unread++;
		unreadSave();
		emit('unread', key);
	}
	emit('msg', m);
	return m;
}

export function applyDelivery(ev) {
	const m = state.byId.get(ev.message_id);
	if (m && mergeInto(m, {state: ev.state, reason: ev.reason})) {
		emit('msg', m);
	}
}

export async function loadConv(key, {force = false} = {}) {
	const c = conv(key);
	if (c.loading) {
		return c.loading;
	}
	if (c.loaded && !force) {
		return undefined;
	}
	c.loading = (async () => {
		try {
			const r = await api('GET', `/api/messages?with=${encodeURIComponent(key)}&limit=50`);
			for (const m of r.messages) {
				upsert(m);
			}
			// Keep the older-page cursor of the first load; a forced reload only catches up.
			if (!c.loaded) {
				c.next = r.next || null;
			}
			c.loaded = true;
			emit('conv', key);
		} finally {
			c.loading = null;
		}
	})();
	return c.loading;
}

export async function loadOlder(key) {
	const c = conv(key);
	if (!c.next || c.loading) {
		return false;
	}
	const q = `with=${encodeURIComponent(key)}&limit=50&before=${c.next.before}&before_id=${encodeURIComponent(c.next.before_id)}`;
	c.loading = (async () => {
		try {
			const r = await api('GET', `/api/messages?${q}`);
			for (const m of r.messages) {
				upsert(m);
			}
			c.next = r.next || null;
			emit('conv', key);
		} finally {
			c.loading = null;
		}
	})();
	await c.loading;
	return true;
}

// Send: the message shows at once ("sending"), then follows the server's states.
export async function send(key, text) {
	const c = conv(key);
	const m = {
		key: `local-${++localSeq}`, id: null, from: state.me.username, to: key, text,
		state: 'sending', reason: null, at: Date.now(),
	};
	insert(c, m);
	emit('msg', m);
	try {
		const r = await api('POST', '/api/messages', {to: key, text});
		const srv = r.message;
		const other = state.byId.get(srv.id);
		if (other && other !== m) {
			// The stream already brought it as another copy: keep that one.
			c.list.splice(c.list.indexOf(m), 1);
			mergeInto(other, srv);
			emit('conv', key);
			return;
		}
		if (!m.id) {
			m.id = srv.id;
			state.byId.set(srv.id, m);
		}
		mergeInto(m, srv);
		emit('msg', m);
	} catch (e) {
		m.state = 'failed';
		if (!m.reason) {
			m.reason = e.message;
		}
		emit('msg', m);
	}
}

// ---- contacts ----

export async function loadContacts() {
	const r = await api('GET', '/api/contacts');
	const seen = new Set();
	for (const ct of r.contacts) {
		seen.add(ct.user_id);
		state.contacts.set(ct.user_id, ct);
	}
	for (const id of [...state.contacts.keys()]) {
		if (!seen.has(id)) {
			state.contacts.delete(id);
		}
	}
	emit('contacts');
}

let contactsTimer = null;

function reloadContactsSoon() {
	if (contactsTimer) {
		return;
	}
	contactsTimer = setTimeout(() => {
		contactsTimer = null;
		loadContacts().catch(() => {});
	}, 400);
}

export function applyPresence(ev) {
	if (state.me && ev.user_id === state.me.username) {
		state.myBluetooth = ev.bluetooth;
		emit('me');
		return;
	}
	const ct = state.contacts.get(ev.user_id);
	if (!ct) {
		state.contacts.set(ev.user_id, {
			user_id: ev.user_id, name: ev.name || ev.user_id, web: !!ev.web,
			presence: ev.presence ?? null, bluetooth: ev.bluetooth ?? null, home: null,
		});
		reloadContactsSoon(); // for its home node, which the event does not carry
	} else {
		if (ct.presence !== ev.presence && !ct.web) {
			reloadContactsSoon(); // a mesh user may have moved to another node
		}
		ct.name = ev.name || ct.name;
		ct.presence = ev.presence ?? null;
		ct.bluetooth = ev.bluetooth ?? null;
	}
	emit('contacts');
}

// After a reset (or the backend coming back): everything from the server again; local
// messages still being sent stay.
export async function reloadAll() {
	await loadContacts();
	for (const c of state.convs.values()) {
		c.loaded = false;
	}
	if (state.current) {
		await loadConv(state.current);
	}
	emit('reload');
}

export function resetState() {
	state.me = null;
	state.myBluetooth = null;
	state.contacts.clear();
	state.convs.clear();
	state.byId.clear();
	state.current = null;
}

export function setMe(user) {
	state.me = user;
	emit('me');
}

export function emitTopic(topic, arg) {
	emit(topic, arg);
}
