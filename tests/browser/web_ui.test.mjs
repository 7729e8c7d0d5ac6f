// The blueq web UI in headless Chromium, as two people use it. Started by
// tests/integration/test_web_ui.sh, which runs the simulator (Odin + 3 nodes, bots carol
// and dave), the manager and the backend, and passes:
//   BE_URL   the backend (serving web/)     SIM_CTL  the simulator's control socket
//   BQ_BIN_DIR  blueq-cli is there          HOOK     stop-/start-backend, stop-/start-manager
//   CHROMIUM the browser binary             SHOTS    where the screenshots go
// Every step has its own deadline; the first failure stops the run (later steps build on
// the earlier ones) after a screenshot of every page.
import {createRequire} from 'node:module';
import {execFileSync} from 'node:child_process';
import {mkdirSync} from 'node:fs';

const require = createRequire(import.meta.url);
const {chromium} = require('playwright-core');

const env = (k) => {
	if (!process.env[k]) {
		console.error(`${k} is not set (run through tests/integration/test_web_ui.sh)`);
		process.exit(2);
	}
	return process.env[k];
};
const BE_URL = env('BE_URL');
const SIM_CTL = env('SIM_CTL');
const BIN = env('BQ_BIN_DIR');
const HOOK = env('HOOK');
const SHOTS = env('SHOTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const PASSWORD = 'correct horse battery';
const XSS = '<img src=x onerror=alert(1)>';

mkdirSync(SHOTS, {recursive: true});
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
let passed = 0;
let failed = 0;
const pages = new Map(); // name -> {page, dialogs, errors, csp: whether the CSP is enforced}

function ctl(cmd) {
	return execFileSync(`${BIN}/blueq-cli`, ['ctl', SIM_CTL, cmd], {encoding: 'utf8', timeout: 5000});
}

function hook(what) {
	execFileSync('bash', [HOOK, what], {stdio: ['ignore', 'inherit', 'inherit'], timeout: 15000});
}

async function shot(name, page, opts = {}) {
	await page.screenshot({path: `${SHOTS}/${name}.png`, ...opts});
}

async function shootAll(prefix) {
	for (const [name, p] of pages) {
		await shot(`${prefix}-${name}`, p.page, {fullPage: true}).catch(() => {});
	}
}

async function step(name, fn) {
	const s = Date.now();
	try {
		await fn();
		passed++;
		log(`ok   ${name} (${Date.now() - s} ms)`);
	} catch (e) {
		failed++;
		log(`FAIL ${name}: ${e.message}`);
		await shootAll(`failed-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`);
		throw e;
	}
}

// Wait until fn(arg) is true in the page; the error names what did not happen.
async function until(page, what, timeout, fn, arg) {
	try {
		await page.waitForFunction(fn, arg, {timeout, polling: 50});
	} catch (e) {
		throw new Error(`${what}: not within ${timeout} ms`);
	}
}

async function waitFor(what, timeout, fn) {
	const end = Date.now() + timeout;
	for (;;) {
		if (await fn()) {
			return;
		}
		if (Date.now() > end) {
			throw new Error(`${what}: not within ${timeout} ms`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
}

function assert(cond, msg) {
	if (!cond) {
		throw new Error(msg);
	}
}

// A person's browser: its own context (cookies), with every dialog, page error and CSP
// violation recorded. bypassCSP makes a context in which an injected script would run:
// the XSS check there cannot be saved by the CSP, only by the page inserting text.
async function person(name, opts = {}) {
	const {bypassCSP = false, ...ctxOpts} = opts;
	const context = await browser.newContext({viewport: {width: 1280, height: 800}, bypassCSP, ...ctxOpts});
	await context.addInitScript(() => {
		window.__csp = [];
		document.addEventListener('securitypolicyviolation', (e) => {
			window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
		});
	});
	const page = await context.newPage();
	const rec = {page, dialogs: [], errors: [], csp: !bypassCSP};
	page.on('dialog', (d) => {
		rec.dialogs.push(d.message());
		d.dismiss().catch(() => {});
	});
	page.on('pageerror', (e) => rec.errors.push(e.message));
	page.on('console', (m) => {
		// Failed requests (the 401 of /api/me before a login, a daemon we stopped) are
		// expected; anything else logged as an error is a bug.
		if (m.type() === 'error' && !/Failed to load resource|ERR_CONNECTION_REFUSED|EventSource/.test(m.text())) {
			rec.errors.push(m.text());
		}
	});
	pages.set(name, rec);
	return page;
}

const contact = (key) => `#contacts [data-contact="${key}"]`;

async function register(page, name, password = PASSWORD) {
	await page.click('#tab-register');
	await page.fill('#auth-user', name);
	await page.fill('#auth-pass', password);
	await page.click('#auth-submit');
}

async function authError(page, re, what) {
	await until(page, what, 3000, (src) => new RegExp(src, 'i').test(document.getElementById('auth-error').textContent), re.source);
}

async function chatShown(page, what) {
	await until(page, what, 5000, () => !document.getElementById('view-chat').hidden);
}

// The text of every message shown in the open conversation.
function shownTexts(page) {
	return page.$$eval('#messages li.msg .text', (els) => els.map((e) => e.textContent));
}

async function seesMessage(page, text, timeout, what) {
	await until(page, what, timeout, (t) => [...document.querySelectorAll('#messages li.msg .text')].some((e) => e.textContent === t), text);
}

async function openConv(page, key) {
	await page.click(contact(key));
	await until(page, `conversation ${key} open`, 3000, (k) => {
		const a = document.querySelector(`#contacts [data-contact="${k}"]`);
		return a && a.getAttribute('aria-current') === 'true' && !document.getElementById('composer').hidden;
	}, key);
}

async function write(page, text) {
	await page.fill('#composer-text', text);
	await page.press('#composer-text', 'Enter');
}

async function apiAs(token, method, path, body) {
	const res = await fetch(`${BE_URL}${path}`, {
		method,
		headers: {'Authorization': `Bearer ${token}`, 'Content-Type': 'application/json'},
		body: body ? JSON.stringify(body) : undefined,
	});
	return {status: res.status, body: await res.json().catch(() => null)};
}

const browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu']});
log(`chromium ${browser.version()}, playwright-core ${require('playwright-core/package.json').version}, node ${process.version}`);
let tRegistered = 0;

try {
	const alice = await person('alice');
	const bob = await person('bob', {bypassCSP: true});

	await step('the login page loads under the backend CSP', async () => {
		const res = await alice.goto(BE_URL);
		assert(res.status() === 200, `GET / answered ${res.status()}`);
		assert(res.headers()['content-security-policy'] === CSP, `CSP is '${res.headers()['content-security-policy']}'`);
		await until(alice, 'the login form', 5000, () => !document.getElementById('view-auth').hidden);
		await shot('login', alice);
	});

	await step('clear messages: short password, wrong password', async () => {
		await register(alice, 'alice', 'short');
		await authError(alice, /too short/, 'short password message');
		await alice.click('#tab-login');
		await alice.fill('#auth-user', 'nobody');
		await alice.fill('#auth-pass', 'not the password');
		await alice.click('#auth-submit');
		await authError(alice, /wrong username or password/, 'wrong password message');
	});

	await step('alice registers', async () => {
		await register(alice, 'alice');
		await chatShown(alice, 'alice sees the chat');
	});

	await step('a taken name is refused clearly; bob registers', async () => {
		await bob.goto(`${BE_URL}/#/register`);
		await register(bob, 'ALICE');
		await authError(bob, /already taken/, 'taken name message');
		await shot('register-taken', bob);
		tRegistered = Date.now();
		await register(bob, 'bob');
		await chatShown(bob, 'bob sees the chat');
	});

	await step('each sees the other in contacts as connected within 1 s of bob\'s "Create account"', async () => {
		const connected = (k) => {
			const a = document.querySelector(`#contacts [data-contact="${k}"]`);
			return a && a.dataset.state === 'connected';
		};
		await until(alice, 'bob connected in alice\'s contacts', Math.max(50, tRegistered + 1000 - Date.now()), connected, 'bob');
		await until(bob, 'alice connected in bob\'s contacts', Math.max(50, tRegistered + 1000 - Date.now()), connected, 'alice');
		log(`     both connected ${Date.now() - tRegistered} ms after bob pressed "Create account"`);
	});

	await step('alice writes bob: shown at once, live for bob, ticks reach delivered', async () => {
		await openConv(bob, 'alice');
		await openConv(alice, 'bob');
		// Every state the message shows, in order.
		await alice.evaluate(() => {
			window.__states = {};
			const rec = () => {
				for (const li of document.querySelectorAll('#messages li.msg.mine')) {
					const t = li.querySelector('.text').textContent;
					const a = (window.__states[t] ||= []);
					if (a[a.length - 1] !== li.dataset.state) {
						a.push(li.dataset.state);
					}
				}
			};
			new MutationObserver(rec).observe(document.getElementById('messages'),
				{subtree: true, childList: true, attributes: true, attributeFilter: ['data-state']});
		});
		const text = 'Hello Bob! This came over the Bluetooth mesh.';
		await write(alice, text);
		await seesMessage(alice, text, 300, 'alice\'s message shown at once');
		await seesMessage(bob, text, 3000, 'bob sees it live');
		await until(alice, 'alice\'s message delivered', 10000, (t) => [...document.querySelectorAll('#messages li.msg.mine')]
			.some((li) => li.querySelector('.text').textContent === t && li.dataset.state === 'delivered'), text);
		const states = await alice.evaluate((t) => window.__states[t], text);
		log(`     states seen: ${states.join(' -> ')}`);
		assert(states[0] === 'sending' && states[states.length - 1] === 'delivered', `states ${states}`);
		const label = await alice.getAttribute('#messages li.msg.mine[data-state="delivered"] .ticks', 'aria-label');
		assert(label === 'Delivered', `tick label '${label}'`);
		await write(bob, 'Hi Alice, got it loud and clear.');
		await seesMessage(alice, 'Hi Alice, got it loud and clear.', 3000, 'alice sees bob\'s answer live');
	});

	let erin;
	await step('a third user\'s broadcast reaches both', async () => {
		const r = await fetch(`${BE_URL}/api/register`, {
			method: 'POST', headers: {'Content-Type': 'application/json'},
			body: JSON.stringify({username: 'erin', password: PASSWORD}),
		});
		assert(r.status === 201, `erin's registration: ${r.status}`);
		erin = (await r.json()).token;
		const text = 'Erin here: lunch on the third floor, everyone welcome!';
		const s = await apiAs(erin, 'POST', '/api/messages', {to: 'broadcast', text});
		assert(s.status === 202, `erin's broadcast: ${s.status} ${JSON.stringify(s.body)}`);
		for (const [who, page] of [['alice', alice], ['bob', bob]]) {
			await until(page, `unread broadcast for ${who}`, 3000, () => {
				const b = document.querySelector('#contacts [data-contact="broadcast"] .badge');
				return b && b.textContent === '1';
			});
		}
		await openConv(bob, 'broadcast');
		await seesMessage(bob, text, 3000, 'bob sees erin\'s broadcast');
		await openConv(alice, 'broadcast');
		await seesMessage(alice, text, 3000, 'alice sees erin\'s broadcast');
		const badge = await alice.$('#contacts [data-contact="broadcast"] .badge');
		assert(!badge, 'the unread badge stays after opening the channel');
	});

	await step('mesh bots\' messages appear (direct and broadcast)', async () => {
		await waitFor('the mesh knows alice', 15000, () => /"alice"/.test(ctl('node 2 users')));
		ctl('bot-send carol alice Hello Alice, carol here on node 2 of the mesh.');
		await until(alice, 'carol\'s message as unread', 10000, () => {
			const b = document.querySelector('#contacts [data-contact="carol"] .badge');
			return b && b.textContent === '1';
		});
		const sub = await alice.textContent(`${contact('carol')} .contact-sub`);
		assert(sub.includes('carol here on node 2'), `carol's preview: '${sub}'`);
		ctl('bot-send dave * Dave on node 4: the mesh is up, hello all.');
		await seesMessage(alice, 'Dave on node 4: the mesh is up, hello all.', 10000, 'dave\'s broadcast live for alice');
		await seesMessage(bob, 'Dave on node 4: the mesh is up, hello all.', 10000, 'dave\'s broadcast live for bob');
		await openConv(alice, 'carol');
		await seesMessage(alice, 'Hello Alice, carol here on node 2 of the mesh.', 3000, 'carol\'s message in her conversation');
		await write(alice, 'Hi Carol! Greetings from the web.');
		await openConv(alice, 'bob');
		await write(alice, 'See you at lunch?');
		await seesMessage(bob, 'Dave on node 4: the mesh is up, hello all.', 100, 'bob keeps the channel');
		await until(alice, 'the last message delivered', 10000, () => {
			const m = [...document.querySelectorAll('#messages li.msg.mine')].pop();
			return m && m.dataset.state === 'delivered';
		});
		await shot('chat', alice);
		await shot('chat-broadcast-bob', bob);
	});

	await step('a message with markup shows as text and runs nothing', async () => {
		await openConv(bob, 'alice');
		await write(alice, XSS);
		await seesMessage(alice, XSS, 300, 'alice sees her message as text');
		await seesMessage(bob, XSS, 3000, 'bob sees it as text');
		for (const [who, page] of [['alice', alice], ['bob', bob]]) {
			const imgs = await page.$$eval('#messages li img, #contacts img', (e) => e.length);
			assert(imgs === 0, `${who}: ${imgs} <img> element(s) made from a message`);
		}
		// An error handler would have run by now (the image would fail to load at once).
		await bob.waitForTimeout(300);
		for (const [who, p] of pages) {
			assert(p.dialogs.length === 0, `${who} got dialogs: ${p.dialogs.join(', ')}`);
		}
		await shot('chat-bob', bob);
	});

	await step('phone width, dark: bob logs in again, the list then a conversation', async () => {
		const phone = await person('phone', {viewport: {width: 390, height: 780}, colorScheme: 'dark', isMobile: true, hasTouch: true});
		await phone.goto(`${BE_URL}/#/login`);
		await phone.fill('#auth-user', 'bob');
		await phone.fill('#auth-pass', PASSWORD);
		await phone.click('#auth-submit');
		await chatShown(phone, 'the phone shows the chat');
		await until(phone, 'contacts on the phone', 3000, () => document.querySelectorAll('#contacts .contact').length >= 4);
		const convShown = await phone.isVisible('#conversation');
		assert(!convShown, 'a phone shows the list and the conversation side by side');
		await shot('phone-list-dark', phone);
		await phone.click(contact('alice'));
		await seesMessage(phone, XSS, 3000, 'the conversation on the phone');
		assert(!(await phone.isVisible('#contacts')), 'the list stays visible over the conversation on a phone');
		await shot('phone-chat-dark', phone);
		await phone.click('#conv-back');
		await until(phone, 'back to the list', 2000, () => document.getElementById('contacts').checkVisibility());
		await phone.context().close();
		pages.delete('phone');
	});

	await step('system status: Odin connected, sessions, mesh graph', async () => {
		await alice.click('#nav-status');
		await until(alice, 'Odin connected', 5000, () => document.getElementById('odin-state').dataset.state === 'connected');
		await until(alice, 'sessions of alice, bob and erin', 5000, () => ['alice', 'bob', 'erin']
			.every((u) => document.querySelector(`#sessions [data-session="${u}"]`)));
		await until(alice, 'the mesh graph (or the note that it is not served)', 5000, () =>
			document.querySelector('#mesh-graph svg.graph') || /does not serve/.test(document.getElementById('mesh-graph').textContent));
		const graph = await alice.$('#mesh-graph svg.graph');
		if (graph) {
			await until(alice, 'four nodes and the users in the graph', 5000, () =>
				document.querySelectorAll('#mesh-graph .node').length === 4 &&
				['alice', 'bob', 'carol', 'dave'].every((u) => document.querySelector(`#mesh-graph [data-user="${u}"]`)));
		} else {
			log('     note: GET /api/mesh is not served by this backend: no graph drawn');
		}
		await alice.waitForTimeout(1200); // a second sample for the rates
		await shot('status', alice, {fullPage: true});
	});

	await step('Odin stops: reconnecting within 2 s, connected again after the restart', async () => {
		assert(/^ok/.test(ctl('kill 1')), 'kill refused');
		const tKill = Date.now();
		await until(alice, 'the status page shows reconnecting', 2000, () => document.getElementById('odin-state').dataset.state === 'reconnecting');
		log(`     reconnecting shown ${Date.now() - tKill} ms after the kill`);
		await until(alice, 'the Odin banner', 2000, () => document.querySelector('[data-banner="odin"][data-kind="warn"]'));
		await shot('status-odin-down', alice, {fullPage: true});
		assert(/^ok/.test(ctl('start 1')), 'start refused');
		const tStart = Date.now();
		await until(alice, 'connected again', 15000, () => document.getElementById('odin-state').dataset.state === 'connected');
		log(`     connected again ${Date.now() - tStart} ms after the restart`);
		await until(alice, 'the banner says Odin is back', 3000, () => document.querySelector('[data-banner="odin"][data-kind="ok"]'));
	});

	await step('the backend stops and comes back: banner, then catch-up over the stream', async () => {
		await openConv(bob, 'broadcast');
		hook('stop-backend');
		await until(alice, 'the backend banner', 8000, () => document.querySelector('[data-banner="backend"][data-kind="error"]'));
		await until(bob, 'the backend banner for bob', 8000, () => document.querySelector('[data-banner="backend"][data-kind="error"]'));
		await shot('backend-down', alice, {fullPage: true});
		// Written while the backend is away: the manager keeps it and hands it over later.
		ctl('bot-send dave * Dave again: did everyone get this?');
		hook('start-backend');
		await until(alice, 'the banner says the backend is back', 8000, () => document.querySelector('[data-banner="backend"][data-kind="ok"]'));
		await seesMessage(bob, 'Dave again: did everyone get this?', 10000, 'bob catches up on the broadcast');
		await alice.click('#nav-chat');
		await openConv(alice, 'broadcast');
		await seesMessage(alice, 'Dave again: did everyone get this?', 5000, 'alice has it too');
		const texts = await shownTexts(bob);
		assert(texts.filter((t) => t === 'Dave again: did everyone get this?').length === 1, 'the broadcast is shown more than once');
	});

	await step('the manager stops: banner, a send fails with its reason, back again', async () => {
		await openConv(alice, 'bob');
		hook('stop-manager');
		await until(alice, 'the manager banner', 8000, () => document.querySelector('[data-banner="manager"][data-kind="error"]'));
		await write(alice, 'Are you still there?');
		await until(alice, 'the message fails', 5000, () => {
			const m = [...document.querySelectorAll('#messages li.msg.mine')].pop();
			return m && m.dataset.state === 'failed';
		});
		const title = await alice.getAttribute('#messages li.msg.mine:last-child .ticks-failed', 'title');
		assert(/unreachable/i.test(title), `failed tick title '${title}'`);
		await alice.click('#messages li.msg.mine:last-child .ticks-failed');
		const reason = await alice.textContent('#messages li.msg.mine:last-child .reason');
		assert(await alice.isVisible('#messages li.msg.mine:last-child .reason') && /unreachable/i.test(reason), `reason '${reason}'`);
		await shot('manager-down', alice);
		hook('start-manager');
		await until(alice, 'the banner says the manager is back', 10000, () => document.querySelector('[data-banner="manager"][data-kind="ok"]'));
	});

	await step('no dialog, page error or CSP violation anywhere', async () => {
		for (const [who, p] of pages) {
			assert(p.dialogs.length === 0, `${who}: dialogs ${p.dialogs.join(', ')}`);
			assert(p.errors.length === 0, `${who}: errors ${p.errors.join(' | ')}`);
			if (p.csp) {
				const v = await p.page.evaluate(() => window.__csp);
				assert(v.length === 0, `${who}: CSP violations ${v.join(' | ')}`);
			}
		}
	});
} catch (e) {
	// reported by step()
	if (!failed) {
		failed++;
		log(`FAIL ${e.stack || e.message}`);
	}
} finally {
	await browser.close().catch(() => {});
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
