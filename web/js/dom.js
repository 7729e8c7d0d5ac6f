// Building the page without HTML strings: every piece of text, user text above all,
// goes in as a text node (or textContent), never through innerHTML, so nothing a user
// writes can become markup or script.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false) {
			continue;
		}
		if (k === 'class') {
			el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
		} else if (k === 'text') {
			el.textContent = String(v);
		} else if (k === 'on') {
			for (const [type, fn] of Object.entries(v)) {
				el.addEventListener(type, fn);
			}
		} else if (k === 'dataset') {
			for (const [dk, dv] of Object.entries(v)) {
				el.dataset[dk] = String(dv);
			}
		} else {
			// Attributes whose names could run code or restyle are refused outright.
			if (/^on/i.test(k) || k === 'style' || k === 'srcdoc') {
				throw new Error(`refusing attribute ${k}`);
			}
			el.setAttribute(k, v === true ? '' : String(v));
		}
	}
}

function append(el, children) {
	for (const c of children.flat(Infinity)) {
		if (c === undefined || c === null || c === false) {
			continue;
		}
		el.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
}

// h('li', {class: 'x', on: {click}}, 'text', child...): an HTML element.
export function h(tag, attrs, ...children) {
	const el = document.createElement(tag);
	apply(el, attrs);
	append(el, children);
	return el;
}

// s('circle', {cx, cy, r}): an SVG element.
export function s(tag, attrs, ...children) {
	const el = document.createElementNS(SVG_NS, tag);
	apply(el, attrs);
	append(el, children);
	return el;
}

export function $(id) {
	return document.getElementById(id);
}

export function clear(el) {
	el.replaceChildren();
}

export function show(el, yes) {
	el.hidden = !yes;
}

// A small icon from the set below, as inline SVG (aria-hidden: the label goes on its owner).
const ICONS = {
	clock: ['M12 7v5l3 2', 'C12 12 9'],
	check: ['M5 12.5l4.5 4.5L19 7.5'],
	checks: ['M2.5 12.5L7 17 16.5 7.5', 'M11 16l1 1 9.5-9.5'],
	alert: ['M12 8v5', 'M12 16.5v.5', 'C12 12 9.5'],
	broadcast: ['M5 12a7 7 0 0114 0', 'M8.5 12a3.5 3.5 0 017 0', 'C12 12 1.2', 'M12 13v7'],
	spinner: ['M12 3a9 9 0 019 9'],
	megaphone: ['M3 10v4l11 5V5L3 10z', 'M14 8.5a4 4 0 010 7', 'M6 14.5l1.5 5h3L9 15.8'],
};

export function icon(name, cls) {
	const svg = s('svg', {viewBox: '0 0 24 24', class: ['icon', `icon-${name}`, cls], 'aria-hidden': 'true', focusable: 'false'});
	for (const d of ICONS[name] || []) {
		if (d.startsWith('C')) {
			const [cx, cy, r] = d.slice(1).trim().split(/\s+/);
			svg.append(s('circle', {cx, cy, r}));
		} else {
			svg.append(s('path', {d}));
		}
	}
	return svg;
}

// Initials and a stable colour class for an avatar (the colour comes from CSS classes,
// never a style attribute: the CSP forbids those).
export function avatar(name, extraClass) {
	const n = String(name || '?');
	const parts = n.split(/[\s._-]+/).filter(Boolean);
	let initials = parts.length > 1 ? [...parts[0]][0] + [...parts[1]][0] : [...n][0];
	initials = initials.toUpperCase();
	let hash = 0;
	for (const ch of n) {
		hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
	}
	return h('div', {class: ['avatar', `hue-${hash % 8}`, extraClass], 'aria-hidden': 'true'}, initials);
}

const timeFmt = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit'});
const dayFmt = new Intl.DateTimeFormat(undefined, {weekday: 'long', day: 'numeric', month: 'long'});
const fullFmt = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'medium'});

export function fmtTime(ms) {
	return timeFmt.format(new Date(ms));
}

export function fmtFull(ms) {
	return fullFmt.format(new Date(ms));
}

export function fmtDay(ms) {
	const d = new Date(ms);
	const today = new Date();
	const y = new Date(today);
	y.setDate(today.getDate() - 1);
	if (d.toDateString() === today.toDateString()) {
		return 'Today';
	}
	if (d.toDateString() === y.toDateString()) {
		return 'Yesterday';
	}
	return dayFmt.format(d);
}

export function fmtAgo(ms) {
	const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
	if (s < 5) {
		return 'just now';
	}
	if (s < 60) {
		return `${s} s ago`;
	}
	if (s < 3600) {
		return `${Math.floor(s / 60)} min ago`;
	}
	if (s < 86400) {
		return `${Math.floor(s / 3600)} h ago`;
	}
	return `${Math.floor(s / 86400)} d ago`;
}

export function fmtDuration(sec) {
	sec = Math.max(0, Math.floor(sec));
	const d = Math.floor(sec / 86400), hh = Math.floor((sec % 86400) / 3600);
	const mm = Math.floor((sec % 3600) / 60), ss = sec % 60;
	if (d) {
		return `${d} d ${hh} h`;
	}
	if (hh) {
		return `${hh} h ${mm} min`;
	}
	if (mm) {
		return `${mm} min ${ss} s`;
	}
	return `${ss} s`;
}

export function fmtNum(n) {
	return typeof n === 'number' ? n.toLocaleString() : '—';
}
