// Banners under the top bar: one per problem (the backend, the manager, Odin, the
// live stream), replaced by a short "back" note when the problem ends.
import {$, h, icon} from './dom.js';

const shown = new Map(); // key -> {el, kind, timer}

// kind: 'error' | 'warn' | 'info' | 'ok'. A banner with the same key is replaced.
export function banner(key, kind, title, detail, {autoHideMs = 0} = {}) {
	const box = $('banners');
	const old = shown.get(key);
	if (old && old.kind === kind && old.title === title && old.detail === detail) {
		return;
	}
	const el = h('div', {
		class: ['banner', `banner-${kind}`],
		role: kind === 'error' ? 'alert' : 'status',
		dataset: {banner: key, kind},
	},
	icon(kind === 'ok' ? 'check' : kind === 'info' ? 'spinner' : 'alert', kind === 'info' ? 'spin' : null),
	h('div', {class: 'banner-text'}, h('strong', {}, title), detail ? h('span', {}, ' ', detail) : null),
	h('button', {
		type: 'button', class: 'btn btn-icon banner-close', 'aria-label': `Dismiss: ${title}`,
		on: {click: () => hide(key)},
	}, '×'));
	if (old) {
		clearTimeout(old.timer);
		old.el.replaceWith(el);
	} else {
		box.append(el);
	}
	const entry = {el, kind, title, detail, timer: null};
	if (autoHideMs) {
		entry.timer = setTimeout(() => hide(key), autoHideMs);
	}
	shown.set(key, entry);
}

export function hide(key) {
	const old = shown.get(key);
	if (old) {
		clearTimeout(old.timer);
		old.el.remove();
		shown.delete(key);
	}
}

export function isShown(key, kind) {
	const b = shown.get(key);
	return !!b && (!kind || b.kind === kind);
}

// A problem that came and went: replace its banner with "back", shown for a while.
export function recovered(key, title, detail) {
	if (isShown(key) && shown.get(key).kind !== 'ok') {
		banner(key, 'ok', title, detail, {autoHideMs: 5000});
	}
}

export function hideAll() {
	for (const key of [...shown.keys()]) {
		hide(key);
	}
}
