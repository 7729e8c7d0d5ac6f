# SPDX-License-Identifier: MIT
"""The Flask reference for bench/bench_backend: the original prototype's backend
endpoints (blueQ-backend.py) as such a Flask app is written and deployed.

    BLUEQ_MANAGER_URL=http://127.0.0.1:8001 BLUEQ_BASELINE_DB=/tmp/baseline.db \
        gunicorn -w 2 -b 127.0.0.1:5000 --chdir bench/baseline app:app

The usual Flask pattern, nothing tuned and nothing slowed down: one sqlite3 connection
per request (the Flask tutorial's get_db / teardown_appcontext), Werkzeug's password
hashing at its defaults, `requests` for the calls to the client manager. Tokens live in
SQLite rather than in a dict: gunicorn runs two worker processes, and a token one
worker issued must be known to the other.
"""
import os
import secrets
import sqlite3
from datetime import datetime, timezone

import requests
from flask import Flask, g, jsonify, request
from werkzeug.security import check_password_hash, generate_password_hash

DATABASE = os.environ.get("BLUEQ_BASELINE_DB", "blueq-baseline.db")
CLIENT_MANAGER_URL = os.environ.get("BLUEQ_MANAGER_URL", "http://localhost:8001")

app = Flask(__name__)


def get_db():
    db = getattr(g, "_database", None)
    if db is None:
        db = g._database = sqlite3.connect(DATABASE)
        db.row_factory = sqlite3.Row
    return db


@app.teardown_appcontext
def close_connection(exception):
    db = getattr(g, "_database", None)
    if db is not None:
        db.close()


def init_db():
    db = sqlite3.connect(DATABASE)
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT UNIQUE NOT NULL,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS tokens (
            token TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id)
        );
        """
    )
    db.commit()
    db.close()


init_db()


def current_user():
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    row = get_db().execute(
        "SELECT users.id, users.username FROM tokens JOIN users ON users.id = tokens.user_id "
        "WHERE tokens.token = ?",
        (auth[len("Bearer "):],),
    ).fetchone()
    return row


def user_json(row):
    return {"id": row["id"], "username": row["username"], "created": row["created_at"]}


@app.route("/api/register", methods=["POST"])
def register():
    data = request.get_json(silent=True) or {}
    username = data.get("username")
    password = data.get("password")
    if not username or not password:
        return jsonify({"error": "username and password are required"}), 400
    db = get_db()
    try:
        cur = db.execute(
            "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, generate_password_hash(password),
             datetime.now(timezone.utc).isoformat()),
        )
    except sqlite3.IntegrityError:
        return jsonify({"error": "username already taken"}), 409
    token = secrets.token_urlsafe(32)
    db.execute("INSERT INTO tokens (token, user_id) VALUES (?, ?)", (token, cur.lastrowid))
    db.commit()
    user = db.execute("SELECT * FROM users WHERE id = ?", (cur.lastrowid,)).fetchone()

    # Auto-connection: tell the client manager about the new user at once.
    try:
        requests.post(
            f"{CLIENT_MANAGER_URL}/api/connect",
            json={"user_id": username, "user_name": username},
            timeout=5,
        )
    except requests.RequestException as e:
        app.logger.warning("could not reach the client manager: %s", e)

    return jsonify({"user": user_json(user), "token": token}), 201


@app.route("/api/login", methods=["POST"])
def login():
    data = request.get_json(silent=True) or {}
    db = get_db()
    user = db.execute(
        "SELECT * FROM users WHERE username = ?", (data.get("username"),)
    ).fetchone()
    if user is None or not check_password_hash(user["password_hash"], data.get("password", "")):
        return jsonify({"error": "invalid credentials"}), 401
    token = secrets.token_urlsafe(32)
    db.execute("INSERT INTO tokens (token, user_id) VALUES (?, ?)", (token, user["id"]))
    db.commit()
    return jsonify({"user": user_json(user), "token": token})


@app.route("/api/contacts", methods=["GET"])
def contacts():
    me = current_user()
    if me is None:
        return jsonify({"error": "login required"}), 401
    rows = get_db().execute(
        "SELECT id, username, created_at FROM users WHERE id != ? "
        "ORDER BY username COLLATE NOCASE",
        (me["id"],),
    ).fetchall()
    contacts = [
        {"user_id": r["username"], "name": r["username"], "web": True, "created": r["created_at"]}
        for r in rows
    ]
    return jsonify({"count": len(contacts), "contacts": contacts})


@app.route("/api/bluetooth/manager/status", methods=["GET"])
def bluetooth_manager_status():
    try:
        response = requests.get(f"{CLIENT_MANAGER_URL}/api/status", timeout=5)
        return jsonify(response.json()), response.status_code
    except requests.RequestException as e:
        return jsonify({"error": f"client manager unreachable: {e}"}), 503


@app.route("/health", methods=["GET"])
def health():
    return jsonify({"status": "ok"})
