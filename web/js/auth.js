// Log in and create an account: one form in two modes, with the backend's error codes
// turned into sentences a person can act on.
import {api} from './api.js';
import {$} from './dom.js';

const USER_RE = /^[A-Za-z0-9_.-]{3,32}$/;
let mode = 'login';
let onDone = () => {};

function setMode(m) {
	mode = m;
	$('tab-login').setAttribute('aria-selected', String(m === 'login'));
	$('tab-register').setAttribute('aria-selected', String(m === 'register'));
	$('tab-login').tabIndex = m === 'login' ? 0 : -1;
	$('tab-register').tabIndex = m === 'register' ? 0 : -1;
	$('auth-submit').textContent = m === 'login' ? 'Log in' : 'Create account';
	$('auth-pass').autocomplete = m === 'login' ? 'current-password' : 'new-password';
	$('auth-user-hint').hidden = m === 'login';
	$('auth-pass-hint').hidden = m === 'login';
	setError('');
	const want = m === 'login' ? '#/login' : '#/register';
	if (location.hash !== want) {
		history.replaceState(null, '', want);
	}
}

function setError(msg, field) {
	$('auth-error').textContent = msg;
	for (const id of ['auth-user', 'auth-pass']) {
		$(id).setAttribute('aria-invalid', String(id === field));
	}
	if (field) {
		$(field).focus();
	}
}

function explain(e) {
	switch (e.code) {
	case 'name_taken':
		return ['That username is already taken. Names are unique whatever their case and are never reused: please pick another.', 'auth-user'];
	case 'bad_username':
		return [`That username cannot be used: ${e.message}.`, 'auth-user'];
	case 'bad_password':
		return [`That password cannot be used: ${e.message}.`, 'auth-pass'];
	case 'bad_credentials':
		return ['Wrong username or password. Check both and try again.', 'auth-pass'];
	case 'rate_limited':
		return [`Too many attempts. Please wait ${e.retryAfter ?? 'a few'} seconds and try again.`, null];
	case 'unreachable':
		return ['The blueq server cannot be reached. Check your connection and try again.', null];
	default:
		return [e.message || 'Something went wrong. Please try again.', null];
	}
}

async function submit(ev) {
	ev.preventDefault();
	const username = $('auth-user').value.trim();
	const password = $('auth-pass').value;
	if (mode === 'register') {
		if (!USER_RE.test(username)) {
			setError('Usernames are 3 to 32 characters: letters, digits, "_", "." or "-".', 'auth-user');
			return;
		}
		const bytes = new TextEncoder().encode(password).length;
		if (bytes < 8) {
			setError('That password is too short: use at least 8 characters.', 'auth-pass');
			return;
		}
		if (bytes > 1024) {
			setError('That password is too long: at most 1,024 bytes.', 'auth-pass');
			return;
		}
	} else if (!username || !password) {
		setError('Enter your username and password.', username ? 'auth-pass' : 'auth-user');
		return;
	}
	const btn = $('auth-submit');
	btn.disabled = true;
	btn.setAttribute('aria-busy', 'true');
	setError('');
	try {
		const r = await api('POST', mode === 'login' ? '/api/login' : '/api/register', {username, password}, {quiet401: true});
		// The token is in the HttpOnly cookie the answer set; the copy in the body is
		// not kept anywhere a script could read it later.
		$('auth-pass').value = '';
		onDone(r.user);
	} catch (e) {
		setError(...explain(e));
	} finally {
		btn.disabled = false;
		btn.removeAttribute('aria-busy');
	}
}

export function initAuth(done) {
	onDone = done;
	$('tab-login').addEventListener('click', () => setMode('login'));
	$('tab-register').addEventListener('click', () => setMode('register'));
	// Arrow keys move between the two tabs, as in any tab list.
	for (const id of ['tab-login', 'tab-register']) {
		$(id).addEventListener('keydown', (e) => {
			if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
				const next = mode === 'login' ? 'register' : 'login';
				setMode(next);
				$(`tab-${next}`).focus();
				e.preventDefault();
			}
		});
	}
	$('auth-show').addEventListener('click', () => {
		const p = $('auth-pass');
		const show = p.type === 'password';
		p.type = show ? 'text' : 'password';
		$('auth-show').textContent = show ? 'Hide' : 'Show';
		$('auth-show').setAttribute('aria-pressed', String(show));
	});
	$('auth-form').addEventListener('submit', submit);
}

export function showAuth(which) {
	setMode(which === 'register' ? 'register' : 'login');
	setTimeout(() => $('auth-user').focus(), 0);
}
