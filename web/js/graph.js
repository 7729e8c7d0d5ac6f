// The mesh drawn as a graph in SVG: nodes and their radio links placed by a small
// force layout (deterministic, and positions kept between refreshes so the picture
// does not jump), every user as a dot beside the node it is attached to, and the
// manager linked to Odin with the link's state.
import {h, s} from './dom.js';

const K = 110; // the ideal link length
const USERS_SHOWN = 8; // per node; the rest is a "+N" chip
const pos = new Map(); // address -> {x, y}: kept across redraws

function hash(str) {
	let x = 2166136261;
	for (const ch of str) {
		x = Math.imul(x ^ ch.codePointAt(0), 16777619) >>> 0;
	}
	return x;
}

function jitter(addr, salt) {
	return ((hash(addr + salt) % 1000) / 1000 - 0.5) * 20;
}

function layout(ids, edges) {
	const n = ids.length;
	const fresh = ids.filter((id) => !pos.has(id));
	// New nodes start beside a placed neighbour, or on a circle when nothing is placed.
	fresh.forEach((id, i) => {
		const nb = edges.find(([a, b]) => (a === id && pos.has(b)) || (b === id && pos.has(a)));
		if (nb) {
			const p = pos.get(nb[0] === id ? nb[1] : nb[0]);
			pos.set(id, {x: p.x + K * 0.7 + jitter(id, 'x'), y: p.y + jitter(id, 'y')});
		} else {
			const a = (2 * Math.PI * i) / Math.max(1, fresh.length);
			const r = K * Math.max(1, n / 4);
			pos.set(id, {x: r * Math.cos(a) + jitter(id, 'x'), y: r * Math.sin(a) + jitter(id, 'y')});
		}
	});
	for (const id of [...pos.keys()]) {
		if (!ids.includes(id)) {
			pos.delete(id);
		}
	}
	const iters = fresh.length ? 300 : 30;
	let temp = fresh.length ? K : K / 8;
	const P = ids.map((id) => pos.get(id));
	const index = new Map(ids.map((id, i) => [id, i]));
	const E = edges.map(([a, b]) => [index.get(a), index.get(b)]);
	for (let it = 0; it < iters; it++) {
		const d = P.map(() => ({x: 0, y: 0}));
		for (let i = 0; i < n; i++) {
			for (let j = i + 1; j < n; j++) {
				let dx = P[i].x - P[j].x, dy = P[i].y - P[j].y;
				let dist = Math.hypot(dx, dy);
				if (dist < 0.01) {
					dx = 0.1 * (i - j);
					dy = 0.1;
					dist = Math.hypot(dx, dy);
				}
				const f = (K * K) / dist;
				d[i].x += (dx / dist) * f;
				d[i].y += (dy / dist) * f;
				d[j].x -= (dx / dist) * f;
				d[j].y -= (dy / dist) * f;
			}
		}
		for (const [i, j] of E) {
			const dx = P[i].x - P[j].x, dy = P[i].y - P[j].y;
			const dist = Math.max(0.01, Math.hypot(dx, dy));
			const f = (dist * dist) / K;
			d[i].x -= (dx / dist) * f;
			d[i].y -= (dy / dist) * f;
			d[j].x += (dx / dist) * f;
			d[j].y += (dy / dist) * f;
		}
		for (let i = 0; i < n; i++) {
			// A little gravity keeps separate pieces of the mesh on the page.
			d[i].x -= P[i].x * 0.05;
			d[i].y -= P[i].y * 0.05;
			const len = Math.max(0.01, Math.hypot(d[i].x, d[i].y));
			const step = Math.min(len, temp);
			P[i].x += (d[i].x / len) * step;
			P[i].y += (d[i].y / len) * step;
		}
		temp = Math.max(1, temp * 0.97);
	}
	return fresh.length > 0;
}

// Turn a new layout so that its long side runs along the page's long side, with the
// manager first: manager, Odin, then the mesh, read left to right (or top down on a
// phone).
let orientedFor = null;

function orient(ids, first, vertical) {
	const P = ids.map((id) => pos.get(id));
	const mx = P.reduce((a, p) => a + p.x, 0) / P.length;
	const my = P.reduce((a, p) => a + p.y, 0) / P.length;
	let sxx = 0, syy = 0, sxy = 0;
	for (const p of P) {
		sxx += (p.x - mx) ** 2;
		syy += (p.y - my) ** 2;
		sxy += (p.x - mx) * (p.y - my);
	}
	const t = -0.5 * Math.atan2(2 * sxy, sxx - syy) + (vertical ? Math.PI / 2 : 0);
	const c = Math.cos(t), sn = Math.sin(t);
	for (const p of P) {
		const x = p.x - mx, y = p.y - my;
		p.x = x * c - y * sn;
		p.y = x * sn + y * c;
	}
	const axis = vertical ? 'y' : 'x';
	if (first && pos.get(first)[axis] > 0) {
		for (const p of P) {
			p[axis] = -p[axis];
		}
	}
}

// mesh: /api/mesh; opts: {gateway: address|null, odinState, webUsers: Set, me}
export function drawMesh(container, mesh, opts) {
	const nodes = new Map();
	for (const nd of mesh.nodes || []) {
		nodes.set(nd.address, {address: nd.address, name: nd.name || nd.address, known: true, age: nd.age_s});
	}
	const edgeSet = new Map();
	for (const nd of mesh.nodes || []) {
		for (const nb of nd.neighbours || []) {
			if (!nodes.has(nb)) {
				nodes.set(nb, {address: nb, name: nb, known: false});
			}
			const k = nd.address < nb ? `${nd.address}|${nb}` : `${nb}|${nd.address}`;
			edgeSet.set(k, nd.address < nb ? [nd.address, nb] : [nb, nd.address]);
		}
	}
	const users = (mesh.users || []).filter((u) => u.home);
	for (const u of users) {
		if (!nodes.has(u.home)) {
			nodes.set(u.home, {address: u.home, name: u.home, known: false});
		}
	}
	if (!nodes.size) {
		container.replaceChildren(h('p', {class: 'muted graph-empty'}, 'No mesh nodes known yet.'));
		return;
	}
	const ids = [...nodes.keys()].sort();
	const edges = [...edgeSet.values()];
	let gw = opts.gateway && nodes.has(opts.gateway) ? opts.gateway : null;
	if (!gw) {
		gw = ids.find((id) => /^odin$/i.test(nodes.get(id).name)) || null;
	}
	const MGR = '\u0000manager';
	const allIds = gw ? [...ids, MGR] : ids;
	const allEdges = gw ? [...edges, [gw, MGR]] : edges;
	const mode = container.clientWidth && container.clientWidth < 560 ? 'vertical' : 'horizontal';
	if (layout(allIds, allEdges) || mode !== orientedFor) {
		orient(allIds, gw ? MGR : null, mode === 'vertical');
		orientedFor = mode;
	}
	// Each node's users go on the side away from its links; when the links pull both
	// ways (a node in a line), across the line: up, or right when drawn top down.
	const away = new Map();
	for (const id of ids) {
		const p = pos.get(id);
		let ax = 0, ay = 0, lx = 1, ly = 0;
		for (const [a, b] of allEdges) {
			const other = a === id ? b : b === id ? a : null;
			if (other === null) {
				continue;
			}
			const q = pos.get(other);
			const d = Math.max(0.01, Math.hypot(q.x - p.x, q.y - p.y));
			ax -= (q.x - p.x) / d;
			ay -= (q.y - p.y) / d;
			lx = (q.x - p.x) / d;
			ly = (q.y - p.y) / d;
		}
		if (Math.hypot(ax, ay) < 0.3) {
			[ax, ay] = [-ly, lx]; // perpendicular to a link
			if (mode === 'vertical' ? ax < 0 : ay > 0) {
				ax = -ax;
				ay = -ay;
			}
		}
		away.set(id, Math.atan2(ay, ax));
	}
	const byHome = new Map();
	for (const u of users) {
		if (!byHome.has(u.home)) {
			byHome.set(u.home, []);
		}
		byHome.get(u.home).push(u);
	}

	const gEdges = s('g', {class: 'edges'});
	const gNodes = s('g', {class: 'nodes'});
	const gUsers = s('g', {class: 'users'});
	let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
	const grow = (x, y, pad) => {
		minX = Math.min(minX, x - pad);
		minY = Math.min(minY, y - pad);
		maxX = Math.max(maxX, x + pad);
		maxY = Math.max(maxY, y + pad);
	};

	for (const [a, b] of edges) {
		const p = pos.get(a), q = pos.get(b);
		gEdges.append(s('line', {x1: p.x, y1: p.y, x2: q.x, y2: q.y, class: 'edge'},
			s('title', {}, `${nodes.get(a).name} ↔ ${nodes.get(b).name}`)));
	}
	if (gw) {
		const p = pos.get(gw), q = pos.get(MGR);
		const ok = opts.odinState === 'connected';
		gEdges.append(s('line', {x1: p.x, y1: p.y, x2: q.x, y2: q.y, class: ['edge-mgr', ok ? 'up' : 'down']},
			s('title', {}, `Manager ↔ Odin: ${opts.odinLabel || opts.odinState || 'unknown'}`)));
		gNodes.append(s('g', {class: ['mgr', ok ? 'up' : 'down'], transform: `translate(${q.x} ${q.y})`},
			s('title', {}, `blueq manager: Odin link ${opts.odinLabel || opts.odinState || 'unknown'}`),
			s('rect', {x: -34, y: -15, width: 68, height: 30, rx: 8}),
			s('text', {y: 4, 'text-anchor': 'middle'}, 'manager')));
		grow(q.x, q.y, 45);
	}
	for (const id of ids) {
		const nd = nodes.get(id);
		const p = pos.get(id);
		const isGw = id === gw;
		const list = (byHome.get(id) || []).sort((a, b) => (a.user_name || a.user_id).localeCompare(b.user_name || b.user_id));
		gNodes.append(s('g', {class: ['node', isGw && 'gateway', !nd.known && 'unknown'], transform: `translate(${p.x} ${p.y})`, dataset: {node: nd.name}},
			s('title', {}, `${nd.name} (${id})${isGw ? ', the gateway' : ''}: ${list.length} user${list.length === 1 ? '' : 's'}`),
			s('circle', {r: isGw ? 22 : 18}),
			s('text', {class: 'node-label', y: isGw ? 38 : 34, 'text-anchor': 'middle'}, nd.name)));
		grow(p.x, p.y, 48);
		// Users on an arc facing away from the node's links, each label further out.
		const base = away.get(id);
		const shown = list.length > USERS_SHOWN ? list.slice(0, USERS_SHOWN - 1) : list;
		const more = list.length - shown.length;
		const slots = shown.length + (more ? 1 : 0);
		const spread = Math.min(Math.PI * 1.5, 0.62 * Math.max(0, slots - 1));
		const R = isGw ? 64 : 58;
		shown.forEach((u, i) => {
			const a = base + (slots > 1 ? -spread / 2 + (spread * i) / (slots - 1) : 0);
			const ux = p.x + R * Math.cos(a), uy = p.y + R * Math.sin(a);
			const web = opts.webUsers.has(u.user_id);
			const name = u.user_name || u.user_id;
			const w = name.length * 6.6;
			const cos = Math.cos(a), sin = Math.sin(a);
			let lx, ly, anchor;
			if (Math.abs(cos) > 0.55) {
				anchor = cos > 0 ? 'start' : 'end';
				lx = cos > 0 ? 11 : -11;
				ly = 4;
			} else {
				anchor = 'middle';
				lx = 0;
				ly = sin > 0 ? 22 : -12;
			}
			gEdges.append(s('line', {x1: p.x, y1: p.y, x2: ux, y2: uy, class: 'edge-user'}));
			gUsers.append(s('g', {
				class: ['user', web ? 'web' : 'meshuser', u.presence !== 'online' && 'away', u.user_id === opts.me && 'me'],
				transform: `translate(${ux} ${uy})`, dataset: {user: u.user_id},
			},
			s('title', {}, `${name}: ${web ? 'web user' : 'mesh user'}, ${u.presence || 'unknown'}, at ${nd.name}`),
			s('circle', {r: 7}),
			s('text', {x: lx, y: ly, 'text-anchor': anchor}, name)));
			const left = anchor === 'start' ? ux + lx : anchor === 'end' ? ux + lx - w : ux - w / 2;
			grow(left, uy + ly - 4, 10);
			grow(left + w, uy + ly - 4, 10);
			grow(ux, uy, 10);
		});
		if (more) {
			const a = base + spread / 2;
			const ux = p.x + R * Math.cos(a), uy = p.y + R * Math.sin(a);
			gUsers.append(s('g', {class: 'user more', transform: `translate(${ux} ${uy})`},
				s('title', {}, `${more} more users at ${nd.name}`),
				s('rect', {x: -15, y: -9, width: 30, height: 18, rx: 9}),
				s('text', {y: 4, 'text-anchor': 'middle'}, `+${more}`)));
			grow(ux, uy, 20);
		}
	}
	const w = maxX - minX, hgt = maxY - minY;
	const svg = s('svg', {
		class: 'graph', viewBox: `${minX} ${minY} ${w} ${hgt}`, role: 'img',
		'aria-label': `Mesh graph: ${ids.length} node${ids.length === 1 ? '' : 's'}, ${edges.length} link${edges.length === 1 ? '' : 's'}, ${users.length} user${users.length === 1 ? '' : 's'}`,
		preserveAspectRatio: 'xMidYMid meet',
	}, gEdges, gNodes, gUsers);
	// Tall or wide, the drawing keeps a readable height (a CSS class, not a style).
	svg.classList.add(hgt > w * 0.9 ? 'tall' : 'wide');
	container.replaceChildren(svg);
}
