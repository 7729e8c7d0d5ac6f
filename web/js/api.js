// The backend's JSON API. Every request sends the login cookie (same origin) and, for
// anything but GET, Content-Type: application/json: the backend's proof that a request
// authenticated by the cookie alone was not forged by another site's form.

export class ApiError extends Error {
	constructor(status, code, message, retryAfter) {
		super(message);
		this.status = status; // 0: the backend could not be reached
		this.code = code;
		this.retryAfter = retryAfter;
	}
}

const listeners = {unreachable: [], reachable: [], unauthorized: []};

export function onApi(kind, fn) {
	listeners[kind].push(fn);
}

function emit(kind, arg) {
	for (const fn of listeners[kind]) {
		fn(arg);
	}
}

const TIMEOUT_MS = 15000;

export async function api(method, path, body, {quiet401 = false} = {}) {
	const init = {method, credentials: 'same-origin', headers: {Accept: 'application/json'}};
	if (method !== 'GET' && method !== 'HEAD') {
		init.headers['Content-Type'] = 'application/json';
		init.body = body === undefined ? '{}' : JSON.stringify(body);
	}
	const ctl = new AbortController();
	const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
	init.signal = ctl.signal;
	let res;
	try {
		res = await fetch(path, init);
	} catch (e) {
		emit('unreachable', e);
		throw new ApiError(0, 'unreachable', 'The blueq server cannot be reached.');
	} finally {
		clearTimeout(timer);
	}
	emit('reachable');
	let data = null;
	const text = await res.text().catch(() => '');
	if (text) {
		try {
			data = JSON.parse(text);
		} catch {
			data = null;
		}
	}
	if (!res.ok) {
		const code = (data && data.code) || `http_${res.status}`;
		const msg = (data && data.error) || `${res.status} ${res.statusText}`;
		const ra = parseInt(res.headers.get('Retry-After') || '', 10);
		if (res.status === 401 && !quiet401) {
			emit('unauthorized');
		}
		throw new ApiError(res.status, code, msg, Number.isFinite(ra) ? ra : undefined);
	}
	return data;
}

// True when /health answers: used while the backend looks down.
export async function probe() {
	try {
		const ctl = new AbortController();
		const timer = setTimeout(() => ctl.abort(), 3000);
		const res = await fetch('/health', {cache: 'no-store', signal: ctl.signal});
		clearTimeout(timer);
		return res.ok;
	} catch {
		return false;
	}
}
