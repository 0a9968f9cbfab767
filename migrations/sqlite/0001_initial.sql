-- mcbot schema, SQLite. Keep in step with migrations/postgres/0001_initial.sql: same tables, columns and keys.
-- Money and quantities are TEXT (exact decimal strings, never REAL); times are BIGINT epoch milliseconds (UTC);
-- JSON is TEXT. Declared types are limited to what the sqlx Any driver maps: INTEGER/BIGINT, TEXT.

-- The job ledger: one row per (job, scheduled fire time), so a bar is processed once.
CREATE TABLE job_runs (
    run_id       TEXT PRIMARY KEY,
    job          TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    attempt      BIGINT NOT NULL DEFAULT 1,
    error        TEXT,
    outcome      TEXT,
    UNIQUE (job, scheduled_at)
);
CREATE INDEX job_runs_scheduled_at_idx ON job_runs (scheduled_at);

-- Orders by deterministic client order id: a second insert of the same id is refused.
CREATE TABLE orders (
    client_order_id   TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL,
    symbol            TEXT NOT NULL,
    side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    qty               TEXT NOT NULL,
    filled_qty        TEXT NOT NULL,
    avg_price         TEXT,
    status            TEXT NOT NULL,
    exchange_order_id TEXT,
    created_at        BIGINT NOT NULL,
    reason            TEXT NOT NULL
);
CREATE INDEX orders_run_id_idx ON orders (run_id);
CREATE INDEX orders_open_idx ON orders (status) WHERE status IN ('pending_new', 'new', 'partially_filled');

-- Fills: exchange trade ids are unique per symbol (Binance numbers trades per symbol), hence the key.
CREATE TABLE fills (
    symbol          TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    qty             TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX fills_ts_idx ON fills (ts);
CREATE INDEX fills_client_order_id_idx ON fills (client_order_id);

CREATE TABLE positions (
    symbol       TEXT PRIMARY KEY,
    qty          TEXT NOT NULL,
    avg_price    TEXT NOT NULL,
    realized_pnl TEXT NOT NULL
);

CREATE TABLE equity_snapshots (
    ts     BIGINT PRIMARY KEY,
    equity TEXT NOT NULL,
    cash   TEXT NOT NULL
);

-- One decision per (run, symbol, strategy): a retried run overwrites its own decision instead of doubling it.
CREATE TABLE signals (
    run_id        TEXT NOT NULL,
    ts            BIGINT NOT NULL,
    symbol        TEXT NOT NULL,
    strategy      TEXT NOT NULL,
    target_weight TEXT NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (run_id, symbol, strategy)
);

CREATE TABLE risk_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       BIGINT NOT NULL,
    run_id   TEXT,
    kind     TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message  TEXT NOT NULL
);
CREATE INDEX risk_events_ts_idx ON risk_events (ts);

CREATE TABLE candles (
    symbol    TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    open_time BIGINT NOT NULL,
    open      TEXT NOT NULL,
    high      TEXT NOT NULL,
    low       TEXT NOT NULL,
    close     TEXT NOT NULL,
    volume    TEXT NOT NULL,
    PRIMARY KEY (symbol, timeframe, open_time)
);

-- One report per (kind, period start); a recomputed report replaces the earlier one.
CREATE TABLE reports (
    kind         TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end   BIGINT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (kind, period_start)
);

CREATE TABLE heartbeats (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     BIGINT NOT NULL,
    ok     INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX heartbeats_ts_idx ON heartbeats (ts);

-- Small keyed documents that must survive a restart (the serialised BotState under key 'bot').
CREATE TABLE bot_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Leases that let one of several scheduler replicas run a job.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
