// The entry point: who is logged in, which view shows (from the URL's #fragment), the
// live stream, and the banners for a backend that went away and came back.
import {api, onApi, probe} from './api.js';
import {$} from './dom.js';
import {state, on, setMe, resetState, loadContacts, reloadAll, upsert, applyDelivery, applyPresence} from './store.js';
import {EventStream} from './events.js';
import {banner, recovered, hide, hideAll} from './banner.js';
import {initAuth, showAuth} from './auth.js';
import {initChat, openConversation, setChatActive, renderContacts} from './chat.js';
import {startStatus, stopStatus, setStatusActive, statusSoon} from './status.js';

const views = ['boot', 'auth', 'chat', 'status'];
let backendDown = false;
let probeTimer = null;
let streamTimer = null;

function showView(name) {
	for (const v of views) {
		$(`view-${v}`).hidden = v !== name;
	}
	const inApp = name === 'chat' || name === 'status';
	$('nav').hidden = !inApp;
	$('me').hidden = !inApp;
	document.body.dataset.view = name;
	$('nav-chat').toggleAttribute('aria-current', false);
	$('nav-status').toggleAttribute('aria-current', false);
	if (name === 'chat') {
		$('nav-chat').setAttribute('aria-current', 'page');
	} else if (name === 'status') {
		$('nav-status').setAttribute('aria-current', 'page');
	}
	setChatActive(name === 'chat');
	setStatusActive(name === 'status');
}

function route() {
	const hash = location.hash || '';
	if (!state.me) {
		showView('auth');
		showAuth(hash.startsWith('#/register') ? 'register' : 'login');
		return;
	}
	if (hash.startsWith('#/status')) {
		showView('status');
		document.title = 'System status · blueq';
		renderContacts(); // the unread count in the title
		return;
	}
	let key = null;
	const m = hash.match(/^#\/chat\/(.+)$/);
	if (m) {
		try {
			key = decodeURIComponent(m[1]);
		} catch {
			key = null;
		}
	} else if (!hash.startsWith('#/chat')) {
		history.replaceState(null, '', '#/chat');
	}
	showView('chat');
	openConversation(key);
}

// ---- the live stream ----

const stream = new EventStream({
	open() {
		clearTimeout(streamTimer);
		recovered('stream', 'Live updates are back.', '');
	},
	message(ev) {
		upsert(ev.message, {live: true});
	},
	delivery(ev) {
		applyDelivery(ev);
	},
	presence(ev) {
		applyPresence(ev);
		statusSoon();
	},
	reset() {
		// Too much was missed to replay: load everything again.
		reloadAll().catch(() => {});
	},
	down(wasUp) {
		// A short blip reconnects by itself; say something only if it lasts.
		if (wasUp) {
			clearTimeout(streamTimer);
			streamTimer = setTimeout(() => {
				if (!stream.up && !backendDown) {
					banner('stream', 'info', 'Reconnecting live updates…', 'New messages will appear when the link is back.');
				}
			}, 1500);
		}
		checkBackend();
	},
	closed() {
		// The browser gave up (e.g. 401 after the session ended): is the login still good?
		api('GET', '/api/me').catch(() => {});
	},
});

// ---- the backend going away and coming back ----

function checkBackend() {
	if (probeTimer) {
		return;
	}
	probe().then((ok) => {
		if (!ok) {
			backendGone();
		}
	});
}

function backendGone() {
	if (!backendDown) {
		backendDown = true;
		banner('backend', 'error', 'The blueq server cannot be reached.', 'Retrying every few seconds; what you write now may fail.');
		hide('stream');
	}
	if (probeTimer) {
		return;
	}
	probeTimer = setInterval(async () => {
		if (await probe()) {
			clearInterval(probeTimer);
			probeTimer = null;
			backendBack();
		}
	}, 2000);
}

function backendBack() {
	if (!backendDown) {
		return;
	}
	backendDown = false;
	recovered('backend', 'Connected to the blueq server again.', '');
	if (state.me) {
		stream.kick();
		reloadAll().catch(() => {});
		statusSoon();
	}
}

onApi('unreachable', backendGone);
onApi('reachable', () => {
	if (backendDown && !probeTimer) {
		backendBack();
	}
});
onApi('unauthorized', () => {
	if (state.me) {
		loggedOut('Your session has ended. Please log in again.');
	}
});

// ---- logging in and out ----

async function loggedIn(user) {
	setMe(user);
	$('me-name').textContent = user.username;
	stream.start();
	startStatus();
	try {
		await loadContacts();
	} catch {
		// banners say why
	}
	if (!location.hash || location.hash.startsWith('#/login') || location.hash.startsWith('#/register')) {
		history.replaceState(null, '', '#/chat');
	}
	route();
}

function loggedOut(msg) {
	stream.stop();
	stopStatus();
	resetState();
	hideAll();
	history.replaceState(null, '', '#/login');
	route();
	if (msg) {
		$('auth-error').textContent = msg;
	}
}

function renderMe() {
	const bt = state.myBluetooth;
	const el = $('me-name');
	el.textContent = state.me ? state.me.username : '';
	el.className = `me-name bt-${bt || 'none'}`;
	el.title = bt ? `Your Bluetooth session: ${bt}` : 'Your Bluetooth session: not reported yet';
}

async function boot() {
	initAuth(loggedIn);
	initChat();
	on('me', renderMe);
	$('logout').addEventListener('click', async () => {
		try {
			await api('POST', '/api/logout', {}, {quiet401: true});
		} catch {
			// logged out here either way
		}
		loggedOut();
	});
	window.addEventListener('hashchange', route);
	// The skip link must not change the #fragment (that is the router's).
	document.querySelector('.skip-link').addEventListener('click', (e) => {
		e.preventDefault();
		$('main').focus();
	});
	try {
		const r = await api('GET', '/api/me', undefined, {quiet401: true});
		await loggedIn(r.user);
	} catch (e) {
		if (e.status === 0) {
			backendGone();
		}
		showView('auth');
		route();
	}
}

boot();

