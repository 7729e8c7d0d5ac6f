// The live event stream (SSE). EventSource sends the HttpOnly login cookie and, when it
// reconnects by itself, the Last-Event-ID of the last event it saw, so the backend
// replays what was missed. When the browser gives up on a stream (an error status, a
// wrong content type) we open a new one after a backoff and pass the last id in the
// query string, which a new EventSource cannot put in a header. A `reset` event means
// the gap could not be replayed: the page reloads its state.

const TYPES = ['message', 'delivery', 'presence', 'reset'];

export class EventStream {
	constructor(handlers) {
		this.h = handlers;
		this.es = null;
		this.lastId = null;
		this.timer = null;
		this.backoff = 1000;
		this.stopped = true;
		this.up = false;
	}

	start() {
		this.stopped = false;
		this.open();
	}

	stop() {
		this.stopped = true;
		this.lastId = null;
		clearTimeout(this.timer);
		if (this.es) {
			this.es.close();
			this.es = null;
		}
		this.up = false;
	}

	// Open now (e.g. the backend is back), cancelling any pending retry.
	kick() {
		if (this.stopped || (this.es && this.es.readyState !== EventSource.CLOSED)) {
			return;
		}
		clearTimeout(this.timer);
		this.open();
	}

	open() {
		if (this.es) {
			this.es.close();
		}
		const url = this.lastId !== null ? `/api/events?last_event_id=${encodeURIComponent(this.lastId)}` : '/api/events';
		const es = new EventSource(url, {withCredentials: false});
		this.es = es;
		es.onopen = () => {
			this.backoff = 1000;
			this.up = true;
			this.h.open();
		};
		for (const type of TYPES) {
			es.addEventListener(type, (ev) => {
				if (ev.lastEventId) {
					this.lastId = ev.lastEventId;
				}
				let data;
				try {
					data = JSON.parse(ev.data);
				} catch {
					return;
				}
				this.h[type](data);
			});
		}
		es.onerror = () => {
			if (es !== this.es) {
				return;
			}
			const wasUp = this.up;
			this.up = false;
			this.h.down(wasUp);
			if (es.readyState === EventSource.CLOSED && !this.stopped) {
				clearTimeout(this.timer);
				this.timer = setTimeout(() => this.open(), this.backoff);
				this.backoff = Math.min(this.backoff * 2, 15000);
				this.h.closed();
			}
		};
	}
}
