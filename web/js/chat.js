// The chat view: the contact list (web and mesh users in one list, the broadcast
// channel first) and the open conversation with its delivery ticks.
import {$, h, icon, avatar, clear, fmtTime, fmtFull, fmtDay} from './dom.js';
import {state, on, conv, loadConv, loadOlder, send, markRead, BROADCAST, totalUnread, setVisibleCheck} from './store.js';

const TEXT_MAX = 4096;
const msgEls = new Map(); // message key -> its <li>, for the open conversation
let filter = '';
let viewActive = false;

// ---- how a contact's state reads ----

const BT_LABEL = {
	ready: 'connected', new: 'connecting', connecting: 'connecting', attaching: 'connecting',
	scanning: 'connecting', backoff: 'reconnecting', disconnecting: 'disconnecting',
	disconnected: 'disconnected', failed: 'failed',
};

export function nodeName(addr) {
	return state.nodeNames.get(addr) || addr;
}

// {dot: online|busy|offline|gone, text: 'Bluetooth connected' ...}
export function contactStatus(ct) {
	if (ct.web) {
		const bt = ct.bluetooth;
		const label = bt ? (BT_LABEL[bt] || bt) : 'unknown';
		const dot = bt === 'ready' ? 'online' : bt === 'failed' ? 'gone' : bt && bt !== 'disconnected' ? 'busy' : 'offline';
		return {dot, label, text: bt ? `Web · Bluetooth ${label}` : 'Web · Bluetooth state not known yet'};
	}
	const p = ct.presence || 'unknown';
	const where = ct.home ? ` via ${nodeName(ct.home)}` : '';
	if (p === 'online') {
		return {dot: 'online', label: 'online', text: `Mesh · online${where}`};
	}
	return {dot: p === 'gone' ? 'gone' : 'offline', label: p, text: `Mesh · ${p}`};
}

function displayName(key) {
	if (key === BROADCAST) {
		return 'Everyone';
	}
	const ct = state.contacts.get(key);
	return ct ? ct.name : key;
}

// ---- the contact list ----

function lastText(key) {
	const c = state.convs.get(key);
	const m = c && c.list[c.list.length - 1];
	if (!m) {
		return null;
	}
	return (m.from === state.me.username ? 'You: ' : key === BROADCAST ? `${m.from}: ` : '') + m.text;
}

function contactItem(key, ct) {
	const c = state.convs.get(key);
	const unread = c ? c.unread : 0;
	const isB = key === BROADCAST;
	const st = isB ? {dot: 'none', label: '', text: 'Broadcast to the whole mesh'} : contactStatus(ct);
	const preview = lastText(key);
	const name = isB ? 'Everyone' : ct.name;
	const selected = state.current === key;
	const label = [name, isB ? 'broadcast channel' : st.text, unread ? `${unread} unread` : null].filter(Boolean).join(', ');
	const av = isB
		? h('div', {class: 'avatar avatar-broadcast', 'aria-hidden': 'true'}, icon('broadcast'))
		: avatar(name);
	return h('li', {class: 'contact-li'},
		h('a', {
			href: `#/chat/${encodeURIComponent(key)}`,
			class: ['contact', selected && 'selected', unread && 'has-unread'],
			'aria-current': selected ? 'true' : null,
			'aria-label': label,
			dataset: {contact: key, state: isB ? 'broadcast' : st.label, web: isB ? 'broadcast' : String(!!ct.web)},
		},
		h('span', {class: 'avatar-wrap'}, av, isB ? null : h('span', {class: ['dot', `dot-${st.dot}`]})),
		h('span', {class: 'contact-main'},
			h('span', {class: 'contact-name'}, name,
				isB || ct.web ? null : h('span', {class: 'tag tag-mesh'}, 'mesh')),
			h('span', {class: ['contact-sub', preview && 'preview']}, preview || st.text)),
		unread ? h('span', {class: 'badge', 'aria-hidden': 'true'}, unread > 99 ? '99+' : unread) : null));
}

export function renderContacts() {
	const ul = $('contacts');
	const focusedKey = document.activeElement && document.activeElement.dataset
		? document.activeElement.dataset.contact : undefined;
	const f = filter.toLowerCase();
	const list = [...state.contacts.values()].filter((ct) => !f || ct.name.toLowerCase().includes(f) || ct.user_id.toLowerCase().includes(f));
	// Conversations with news first (most recent on top), then everyone by name.
	const last = (ct) => (state.convs.get(ct.user_id) || {lastAt: 0}).lastAt;
	list.sort((a, b) => last(b) - last(a) || a.name.localeCompare(b.name, undefined, {sensitivity: 'base'}));
	const items = [];
	if (!f || 'everyone broadcast'.includes(f)) {
		items.push(contactItem(BROADCAST, null));
	}
	for (const ct of list) {
		items.push(contactItem(ct.user_id, ct));
	}
	ul.replaceChildren(...items);
	$('contacts-empty').hidden = state.contacts.size > 0 || !!f;
	if (focusedKey !== undefined) {
		const again = ul.querySelector(`[data-contact="${CSS.escape(focusedKey)}"]`);
		if (again) {
			again.focus();
		}
	}
	renderHeader();
	renderUnreadTotal();
}

function renderUnreadTotal() {
	const n = totalUnread();
	const b = $('nav-unread');
	b.hidden = !n;
	b.textContent = n > 99 ? '99+' : String(n);
	$('nav-chat').setAttribute('aria-label', n ? `Chat, ${n} unread` : 'Chat');
	const base = document.body.dataset.view === 'status' ? 'System status · blueq' : 'blueq';
	document.title = n ? `(${n}) ${base}` : base;
}

// ---- the conversation ----

function renderHeader() {
	const key = state.current;
	const av = $('conv-avatar');
	if (!key) {
		$('conv-name').textContent = 'Pick a conversation';
		$('conv-sub').textContent = '';
		av.replaceWith(h('div', {class: 'avatar', id: 'conv-avatar', 'aria-hidden': 'true'}));
		return;
	}
	const ct = state.contacts.get(key);
	$('conv-name').textContent = displayName(key);
	let sub;
	if (key === BROADCAST) {
		sub = 'Broadcast: everyone on the mesh and the web sees these';
	} else if (ct) {
		sub = contactStatus(ct).text;
	} else {
		sub = 'Not in your contacts right now';
	}
	$('conv-sub').textContent = sub;
	const nav = key === BROADCAST
		? h('div', {class: 'avatar avatar-broadcast', id: 'conv-avatar', 'aria-hidden': 'true'}, icon('broadcast'))
		: avatar(displayName(key));
	nav.id = 'conv-avatar';
	av.replaceWith(nav);
	$('composer-label').textContent = `Message to ${displayName(key)}`;
	$('composer-text').placeholder = key === BROADCAST ? 'Write to everyone' : `Write to ${displayName(key)}`;
}

const TICKS = {
	sending: ['clock', 'Sending'],
	queued: ['clock', 'Queued'],
	sent: ['check', 'Sent'],
	delivered: ['checks', 'Delivered'],
	broadcast: ['broadcast', 'Sent to mesh'],
	failed: ['alert', 'Failed'],
};

function ticks(m) {
	const [ic, label] = TICKS[m.state] || ['check', m.state];
	if (m.state === 'failed') {
		const why = m.reason || 'no reason given';
		return h('button', {
			type: 'button', class: 'ticks ticks-failed', title: `Failed: ${why}`,
			'aria-label': `Failed: ${why}. Show the reason`, 'aria-expanded': 'false',
			dataset: {state: m.state},
			on: {click: (e) => toggleReason(e.currentTarget)},
		}, icon(ic), h('span', {class: 'ticks-label'}, 'Failed'));
	}
	return h('span', {class: ['ticks', `ticks-${m.state}`], role: 'img', title: label, 'aria-label': label, dataset: {state: m.state}}, icon(ic));
}

function toggleReason(btn) {
	const li = btn.closest('.msg');
	const r = li.querySelector('.reason');
	const open = r.hidden;
	r.hidden = !open;
	btn.setAttribute('aria-expanded', String(open));
}

function msgItem(m, prev) {
	const mine = m.from === state.me.username;
	const showFrom = !mine && state.current === BROADCAST && (!prev || prev.from !== m.from);
	const bubble = h('div', {class: 'bubble'},
		showFrom ? h('span', {class: 'from'}, displayName(m.from)) : null,
		h('p', {class: 'text'}, m.text),
		h('span', {class: 'meta'},
			h('time', {datetime: new Date(m.at).toISOString(), title: fmtFull(m.at)}, fmtTime(m.at)),
			mine ? ticks(m) : null));
	const li = h('li', {
		class: ['msg', mine ? 'mine' : 'theirs', `state-${m.state}`, prev && prev.from === m.from && 'cont'],
		dataset: {key: m.key, id: m.id || '', state: m.state},
	}, bubble);
	if (mine) {
		// Shown when the failed tick is tapped (the tick's title shows it on hover).
		li.append(h('p', {class: 'reason', role: 'note', hidden: true}, m.reason ? `Not sent: ${m.reason}` : ''));
	}
	return li;
}

function dayOf(ms) {
	return new Date(ms).toDateString();
}

function renderMessages() {
	const box = $('messages');
	msgEls.clear();
	const key = state.current;
	if (!key) {
		box.replaceChildren($('conv-placeholder') || placeholder());
		return;
	}
	const c = conv(key);
	const ol = h('ol', {class: 'msg-list', id: 'msg-list'});
	if (c.next) {
		ol.append(h('li', {class: 'older'}, h('button', {
			type: 'button', class: 'btn btn-ghost btn-small', id: 'load-older',
			on: {click: () => older()},
		}, 'Load older messages')));
	}
	let prev = null;
	for (const m of c.list) {
		if (!prev || dayOf(prev.at) !== dayOf(m.at)) {
			ol.append(h('li', {class: 'day', role: 'separator'}, h('span', {}, fmtDay(m.at))));
			prev = null;
		}
		const li = msgItem(m, prev);
		msgEls.set(m.key, li);
		ol.append(li);
		prev = m;
	}
	if (!c.list.length) {
		ol.append(h('li', {class: 'empty-conv muted'}, c.loaded
			? (key === BROADCAST ? 'Nothing on the broadcast channel yet. Say hello to everyone!' : `No messages with ${displayName(key)} yet. Say hello!`)
			: 'Loading…'));
	}
	box.replaceChildren(ol);
	box.scrollTop = box.scrollHeight;
}

function placeholder() {
	return h('div', {class: 'placeholder', id: 'conv-placeholder'},
		h('img', {src: '/favicon.svg', alt: '', width: 64, height: 64}),
		h('p', {}, 'Choose someone on the left, or write to everyone on the broadcast channel.'));
}

async function older() {
	const box = $('messages');
	const before = box.scrollHeight - box.scrollTop;
	try {
		await loadOlder(state.current);
	} catch {
		return;
	}
	box.scrollTop = box.scrollHeight - before; // keep the reader's place
}

// One message changed or arrived: update in place, append, or redraw when it lands in
// the middle.
function onMsg(m) {
	const key = m.to === BROADCAST ? BROADCAST : m.from === state.me.username ? m.to : m.from;
	if (key !== state.current || !viewActive) {
		renderContactsSoon();
		return;
	}
	const old = msgEls.get(m.key);
	if (old) {
		const c = conv(key);
		const i = c.list.indexOf(m);
		const fresh = msgItem(m, i > 0 ? c.list[i - 1] : null);
		const reasonOpen = old.querySelector('.reason') && !old.querySelector('.reason').hidden;
		old.replaceWith(fresh);
		msgEls.set(m.key, fresh);
		if (reasonOpen && fresh.querySelector('.ticks-failed')) {
			toggleReason(fresh.querySelector('.ticks-failed'));
		}
		renderContactsSoon();
		return;
	}
	const c = conv(key);
	const box = $('messages');
	const atEnd = c.list[c.list.length - 1] === m;
	const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
	const ol = $('msg-list');
	if (!atEnd || !ol) {
		renderMessages();
	} else {
		const prev = c.list.length > 1 ? c.list[c.list.length - 2] : null;
		const empty = ol.querySelector('.empty-conv');
		if (empty) {
			empty.remove();
		}
		if (!prev || dayOf(prev.at) !== dayOf(m.at)) {
			ol.append(h('li', {class: 'day', role: 'separator'}, h('span', {}, fmtDay(m.at))));
		}
		const li = msgItem(m, prev && dayOf(prev.at) === dayOf(m.at) ? prev : null);
		li.classList.add('fresh');
		msgEls.set(m.key, li);
		ol.append(li);
		if (nearBottom || m.from === state.me.username) {
			box.scrollTop = box.scrollHeight;
		}
	}
	if (isSeen(key)) {
		markRead(key);
	}
	renderContactsSoon();
}

let contactsQueued = false;

function renderContactsSoon() {
	if (contactsQueued) {
		return;
	}
	contactsQueued = true;
	requestAnimationFrame(() => {
		contactsQueued = false;
		renderContacts();
	});
}

function isSeen(key) {
	return viewActive && state.current === key && document.visibilityState === 'visible';
}

// ---- the composer ----

function bytes(s) {
	return new TextEncoder().encode(s).length;
}

function updateComposer() {
	const ta = $('composer-text');
	const n = bytes(ta.value);
	const count = $('composer-count');
	$('composer-send').disabled = !ta.value.trim() || n > TEXT_MAX;
	count.hidden = n < TEXT_MAX - 500;
	count.textContent = `${TEXT_MAX - n}`;
	count.classList.toggle('over', n > TEXT_MAX);
	count.setAttribute('aria-label', n > TEXT_MAX ? `${n - TEXT_MAX} bytes too long` : `${TEXT_MAX - n} bytes left`);
	// Grow with the text, up to a limit (rows, not a style: the CSP forbids inline styles).
	ta.rows = Math.min(6, Math.max(1, ta.value.split('\n').length));
}

function submitComposer(ev) {
	ev.preventDefault();
	const ta = $('composer-text');
	const text = ta.value;
	if (!text.trim() || bytes(text) > TEXT_MAX || !state.current) {
		return;
	}
	ta.value = '';
	updateComposer();
	send(state.current, text);
	ta.focus();
}

// ---- open a conversation ----

export async function openConversation(key) {
	const changed = state.current !== key;
	state.current = key;
	$('view-chat').classList.toggle('show-conv', !!key);
	$('composer').hidden = !key;
	renderHeader();
	renderContacts();
	if (changed) {
		renderMessages();
	}
	if (!key) {
		return;
	}
	markRead(key);
	try {
		await loadConv(key);
	} catch {
		// the banner says why; the list shows what we have
	}
	if (state.current === key) {
		renderMessages();
		markRead(key);
	}
}

export function setChatActive(yes) {
	viewActive = yes;
	if (yes && state.current) {
		markRead(state.current);
	}
}

export function initChat() {
	$('composer').addEventListener('submit', submitComposer);
	const ta = $('composer-text');
	ta.addEventListener('input', updateComposer);
	ta.addEventListener('keydown', (e) => {
		if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
			submitComposer(e);
		}
	});
	$('contact-filter').addEventListener('input', (e) => {
		filter = e.target.value.trim();
		renderContacts();
	});
	$('conv-back').addEventListener('click', () => {
		location.hash = '#/chat';
	});
	$('messages').addEventListener('scroll', () => {
		const box = $('messages');
		if (box.scrollTop < 40 && state.current && conv(state.current).next) {
			older();
		}
	});
	document.addEventListener('visibilitychange', () => {
		if (isSeen(state.current)) {
			markRead(state.current);
		}
	});
	setVisibleCheck(isSeen);
	on('contacts', renderContactsSoon);
	on('msg', onMsg);
	on('conv', (key) => {
		if (key === state.current) {
			renderMessages();
		}
		renderContactsSoon();
	});
	on('unread', renderContactsSoon);
	on('reload', () => {
		renderContacts();
		renderMessages();
	});
}
