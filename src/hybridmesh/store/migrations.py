"""The schema of the state store, as an ordered list of migrations.

Append new migrations with the next version number; never edit or reorder one that has
shipped, since databases record which versions they have applied. Keep the SQL portable
between SQLite and PostgreSQL: TEXT, INTEGER, BIGINT and DOUBLE PRECISION columns, no
dialect-only syntax. Where a dialect needs its own form (an auto-incrementing key), give it
in :attr:`Migration.dialect_statements`.
"""

from __future__ import annotations

from hybridmesh.store._base import Migration, check_migrations


def _event_log(seq_column: str) -> str:
    return f"""
    CREATE TABLE event_log (
        seq {seq_column},
        event_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        partition INTEGER NOT NULL,
        only_group TEXT, -- set for a replay: only this group receives it, and no dedupe
        body TEXT NOT NULL, -- the CloudEvent, structured-mode JSON
        published_at DOUBLE PRECISION NOT NULL -- epoch seconds
    )
    """


# The event log of backends/sql.py. Times are epoch seconds from the injected clock; seq
# never goes back, even when retention deletes the newest rows (AUTOINCREMENT, identity).
_EVENTS = (
    # Dedupe on (source, id); replays (only_group set) bypass it.
    "CREATE UNIQUE INDEX event_log_dedupe ON event_log (source, event_id) WHERE only_group IS NULL",
    "CREATE INDEX event_log_partition ON event_log (partition, seq)",
    """
    CREATE TABLE event_groups (
        name TEXT PRIMARY KEY,
        pattern TEXT NOT NULL,
        start TEXT NOT NULL,
        max_deliveries INTEGER NOT NULL,
        ack_wait DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE event_positions (
        group_name TEXT NOT NULL REFERENCES event_groups (name) ON DELETE CASCADE,
        partition INTEGER NOT NULL,
        position BIGINT NOT NULL, -- the group has dealt with every seq up to this one
        head_attempts INTEGER NOT NULL DEFAULT 0, -- deliveries so far of the next event
        not_before DOUBLE PRECISION NOT NULL DEFAULT 0, -- a retry waits until then
        lease_owner TEXT, -- the consumer holding the partition
        lease_token TEXT, -- unique per lease: a settle must present it
        lease_until DOUBLE PRECISION,
        PRIMARY KEY (group_name, partition)
    )
    """,
    """
    CREATE TABLE event_dead_letters (
        id TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        event_id TEXT,
        source TEXT,
        type TEXT,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        body TEXT NOT NULL,
        failed_at DOUBLE PRECISION NOT NULL,
        replayed_at DOUBLE PRECISION
    )
    """,
    "CREATE INDEX event_dead_letters_group ON event_dead_letters (group_name, failed_at)",
)


def _outbox(seq: str) -> str:
    # Events written with business rows in one transaction; events/outbox.py relays them.
    return f"""
    CREATE TABLE event_outbox (
        seq {seq},
        event_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL, -- the event, structured JSON
        created_at TEXT NOT NULL
    )
    """


# Receipts of idempotent consumers (events/idempotency.py): one row per handled event.
_RECEIPTS = (
    """
    CREATE TABLE event_receipts (
        consumer TEXT NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        handled_at TEXT NOT NULL,
        PRIMARY KEY (consumer, source, event_id)
    )
    """,
    "CREATE INDEX event_receipts_age ON event_receipts (consumer, handled_at)",
)

# Durable orchestration (orchestration/): versioned plans, executions with their state and
# lease, and each execution's append-only history. Times are epoch seconds.
_ORCHESTRATION = (
    """
    CREATE TABLE orch_definitions (
        kind TEXT NOT NULL, -- saga or workflow
        name TEXT NOT NULL, -- the saga type or workflow id
        version INTEGER NOT NULL,
        digest TEXT NOT NULL, -- of the plan's JSON: a changed definition gets a new version
        body TEXT NOT NULL, -- the plan, as JSON
        source TEXT, -- file:line it was loaded from, when it came from YAML
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, name, version)
    )
    """,
    """
    CREATE TABLE orch_executions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        input TEXT NOT NULL, -- JSON
        state TEXT NOT NULL, -- JSON: each step's state and the context
        error TEXT,
        trace_context TEXT, -- the W3C traceparent of the execution's span
        wake_at DOUBLE PRECISION, -- due for a worker from then on; NULL: waits for an event
        lease_owner TEXT,
        lease_until DOUBLE PRECISION,
        history_seq INTEGER NOT NULL DEFAULT 0, -- the last seq written to orch_history
        signals INTEGER NOT NULL DEFAULT 0, -- 1 while orch_signals holds rows for it
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION
    )
    """,
    "CREATE INDEX orch_executions_due ON orch_executions (wake_at)",
    "CREATE INDEX orch_executions_status ON orch_executions (status, created_at)",
    # What arrives for an execution from outside while a worker may hold it: a step's
    # completion event, a cancel request. The worker holding it consumes them.
    """
    CREATE TABLE orch_signals (
        id TEXT PRIMARY KEY,
        execution_id TEXT NOT NULL,
        kind TEXT NOT NULL, -- step_completed, step_failed, cancel
        step_id TEXT,
        data TEXT, -- JSON
        at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX orch_signals_execution ON orch_signals (execution_id, at)",
    """
    CREATE TABLE orch_history (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        step_id TEXT,
        attempt INTEGER,
        data TEXT, -- JSON
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (execution_id, seq)
    )
    """,
)

# The manual review queue (review/): what needs a person, and everything done to it.
_REVIEW = (
    """
    CREATE TABLE review_items (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL, -- saga, workflow, batch or dlq (later: replication)
        origin_ref TEXT, -- the execution, batch record or dead letter it came from
        reason TEXT NOT NULL,
        payload TEXT NOT NULL, -- JSON
        status TEXT NOT NULL, -- open, retried, resolved or discarded
        action_seq INTEGER NOT NULL DEFAULT 0, -- the seq of its last row in review_actions
        retry_until DOUBLE PRECISION, -- a retry in progress holds the item until then
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX review_items_status ON review_items (status, created_at)",
    "CREATE INDEX review_items_origin ON review_items (origin, origin_ref)",
    """
    CREATE TABLE review_actions (
        item_id TEXT NOT NULL,
        seq INTEGER NOT NULL, -- 1 for created, then one more per action
        action TEXT NOT NULL, -- created, retried, retry_failed, resolved, discarded
        actor TEXT,
        note TEXT,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (item_id, seq)
    )
    """,
)

# Batch integration with legacy systems (batch/): queued records and the runs that carried
# them (a file in the exchange directory, or a POST to a bulk endpoint).
_BATCH = (
    """
    CREATE TABLE batch_records (
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        operation TEXT NOT NULL,
        payload TEXT NOT NULL, -- JSON
        idempotency_key TEXT,
        status TEXT NOT NULL, -- queued, sent, acknowledged, failed
        run_id TEXT,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX batch_records_queue ON batch_records (target, operation, status, created_at)",
    "CREATE INDEX batch_records_run ON batch_records (run_id)",
    # Enqueueing the same key twice for one queue keeps the first record only.
    "CREATE UNIQUE INDEX batch_records_dedupe ON batch_records (target, operation, "
    "idempotency_key) WHERE idempotency_key IS NOT NULL",
    """
    CREATE TABLE batch_runs (
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        operation TEXT NOT NULL,
        format TEXT NOT NULL, -- csv, xml or http
        location TEXT NOT NULL, -- the file written, or the URL posted to
        records INTEGER NOT NULL,
        status TEXT NOT NULL, -- sent, acknowledged, partially_failed, failed
        error TEXT, -- why a run failed: not delivered (records requeued), or all rejected
        created_at DOUBLE PRECISION NOT NULL,
        acknowledged_at DOUBLE PRECISION
    )
    """,
    "CREATE INDEX batch_runs_status ON batch_runs (status, created_at)",
)

# The SQL log's reads pass over the types a group does not want in the database: the
# columns they test come with each entry of the partition index, so a range of other types
# costs index entries, not rows with their bodies. It replaces (partition, seq).
_EVENT_SCAN = (
    "CREATE INDEX event_log_scan ON event_log (partition, seq, type, only_group)",
    "DROP INDEX event_log_partition",
)

# The gateway: its routes (each a JSON document with a revision), one revision counter for
# everything the gateway replicas share (routes and keys: a replica reloads when it moves),
# API keys (hashed), a bounded sample of mirror mismatches, and per-second windows that
# each replica publishes for `routes stats`.
_GATEWAY = (
    """
    CREATE TABLE gw_routes (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        revision BIGINT NOT NULL,
        source TEXT,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE TABLE gw_revision (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
    "INSERT INTO gw_revision (id, revision) VALUES (1, 0)",
    """
    CREATE TABLE gw_keys (
        id TEXT PRIMARY KEY,
        consumer TEXT NOT NULL,
        route TEXT,
        digest TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )
    """,
    """
    CREATE TABLE gw_mismatches (
        id TEXT PRIMARY KEY,
        route TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        differences TEXT NOT NULL,
        primary_status INTEGER,
        candidate_status INTEGER,
        primary_body TEXT,
        candidate_body TEXT
    )
    """,
    "CREATE INDEX gw_mismatches_route ON gw_mismatches (route, at)",
    """
    CREATE TABLE gw_windows (
        replica TEXT NOT NULL,
        route TEXT NOT NULL,
        backend TEXT NOT NULL,
        second BIGINT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        latency TEXT NOT NULL,
        PRIMARY KEY (route, second, replica, backend)
    )
    """,
)

# Migration plans (migration/): each plan's current version and where its run stands, with
# the lease that lets one runner at a time act on it (``lease_epoch`` fences a runner that
# lost its lease), every stored version of its spec, and the audit of every action (``seq``
# orders a plan's entries: each is written after its plan's row is locked).
_MIGRATION_PLANS = (
    """
    CREATE TABLE mig_plans (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        step INTEGER NOT NULL,
        phase TEXT NOT NULL,
        window_started DOUBLE PRECISION,
        gate TEXT,
        reason TEXT,
        approved_step INTEGER,
        request TEXT,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION,
        lease_epoch BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX mig_plans_status ON mig_plans (status)",
    """
    CREATE TABLE mig_plan_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        plan TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (name, version)
    )
    """,
    """
    CREATE TABLE mig_audit (
        id TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        step INTEGER,
        reason TEXT,
        details TEXT
    )
    """,
    "CREATE UNIQUE INDEX mig_audit_plan ON mig_audit (plan, seq)",
)

# Feature flags (flags/): each flag a JSON definition with its own version (1 when created,
# one more per change), and one revision counter that every change moves in the same
# transaction: a process's flag cache reloads when it moves (and, on PostgreSQL, when
# NOTIFY hybridmesh_flags says so).
_FLAGS = (
    """
    CREATE TABLE ff_flags (
        key TEXT PRIMARY KEY,
        definition TEXT NOT NULL, -- the flag, as JSON
        version BIGINT NOT NULL,
        revision BIGINT NOT NULL, -- the revision of its last change
        source TEXT, -- the file it was applied from, if any
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE TABLE ff_revision (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
    "INSERT INTO ff_revision (id, revision) VALUES (1, 0)",
)

# Boundary experiments (migration/boundary.py): each run of a candidate boundary mirrored
# against a route's live traffic, with its verdict and measurements (the whole result as
# JSON, the columns it is listed by beside it). The mirror's window rows gain how many
# copies were compared with the primary's answer and how many differed: the mismatch rate
# of a parallel run, read from the store rather than from one replica's metrics.
_BOUNDARY_EXPERIMENTS = (
    """
    CREATE TABLE mig_experiments (
        id TEXT PRIMARY KEY,
        route TEXT NOT NULL,
        status TEXT NOT NULL,
        verdict TEXT,
        result TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION
    )
    """,
    "CREATE INDEX mig_experiments_started ON mig_experiments (started_at)",
    "CREATE INDEX mig_experiments_route ON mig_experiments (route, status)",
    "ALTER TABLE gw_windows ADD COLUMN compared INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE gw_windows ADD COLUMN mismatches INTEGER NOT NULL DEFAULT 0",
)

# Replications and event bridges of the data side: each definition (as JSON), the state a
# person asks for (running, paused, stopped), whether reverse sync runs, and the status the
# process running it last reported. Positions and progress themselves live in the target
# database, committed with the rows they describe.
_DATA_REPLICATIONS = (
    """CREATE TABLE data_replications (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL, -- replication or bridge
        spec TEXT NOT NULL,
        desired TEXT NOT NULL, -- running, paused or stopped
        reverse INTEGER NOT NULL DEFAULT 0,
        status TEXT,
        owner TEXT, -- the process running it, while its heartbeat is fresh
        heartbeat_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
)

# Read models (data/projections.py). A projection's checkpoint and the receipts of the
# events it applied live in the database of its table, so they commit with its writes:
# these two tables are made here for projections kept in this store, and by the projection
# itself (the same statements, hence IF NOT EXISTS) in any other database. Never change
# them: a later change is a new migration, and the same change in that setup.
PROJECTION_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS projection_checkpoints (
        name TEXT PRIMARY KEY,
        checkpoint BIGINT, -- the highest log position applied
        events_applied BIGINT NOT NULL DEFAULT 0,
        last_event_at DOUBLE PRECISION, -- the newest applied event's time, epoch seconds
        missing_events BIGINT NOT NULL DEFAULT 0, -- applied once, gone from the log at a rebuild
        missing_upto BIGINT, -- the highest position among those
        rebuild_id TEXT, -- set while a rebuild runs: consumers wait for it
        rebuilt_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS projection_receipts (
        projection TEXT NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        position BIGINT, -- in the log, when the bus told it
        applied_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (projection, source, event_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS projection_receipts_position "
    "ON projection_receipts (projection, position)",
)

# The registry of projections: what `hybridmesh projections list` shows and `rebuild` needs
# (the import path of the projection's definition). Its figures mirror the checkpoint row
# in the projection's own database.
_PROJECTIONS = (
    """
    CREATE TABLE projections (
        name TEXT PRIMARY KEY,
        pattern TEXT NOT NULL,
        target TEXT NOT NULL, -- the read model's database, as shown (no password)
        import_path TEXT, -- module:attribute of the Projection
        status TEXT NOT NULL, -- idle, running, failing, rebuilding, rebuild-failed
        checkpoint BIGINT,
        events_applied BIGINT NOT NULL DEFAULT 0,
        last_event_at DOUBLE PRECISION,
        missing_events BIGINT NOT NULL DEFAULT 0,
        missing_upto BIGINT,
        last_error TEXT,
        rebuilt_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    *PROJECTION_TABLES,
)

# Reconciliation of replicated tables (data/reconcile.py): one row per run, counts before any
# repair; one row per row a repair wrote, with the row before and after as JSON.
_RECONCILIATION = (
    """
    CREATE TABLE data_reconcile_runs (
        id TEXT PRIMARY KEY,
        replication TEXT NOT NULL,
        status TEXT NOT NULL, -- running, consistent, repaired, inconsistent, failed
        truth TEXT NOT NULL, -- source or target: the side repairs copy from
        repair INTEGER NOT NULL, -- 1 when the run repaired what it found
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        source_rows BIGINT NOT NULL DEFAULT 0,
        missing BIGINT NOT NULL DEFAULT 0, -- in the source, not in the target
        extra BIGINT NOT NULL DEFAULT 0, -- in the target, not in the source
        different BIGINT NOT NULL DEFAULT 0,
        rate DOUBLE PRECISION NOT NULL DEFAULT 0, -- differing rows over the source's rows
        repaired BIGINT NOT NULL DEFAULT 0,
        remaining BIGINT, -- differences left at the end of the run
        report TEXT, -- the run's report, as JSON
        error TEXT
    )
    """,
    "CREATE INDEX data_reconcile_runs_name ON data_reconcile_runs (replication, started_at)",
    """
    CREATE TABLE data_reconcile_repairs (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        replication TEXT NOT NULL,
        side TEXT NOT NULL, -- the side written: source or target
        table_name TEXT NOT NULL,
        row_key TEXT NOT NULL, -- JSON, the written table's column names
        action TEXT NOT NULL, -- insert, update or delete
        row_before TEXT, -- JSON; NULL for an insert
        row_after TEXT, -- JSON; NULL for a delete
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, seq)
    )
    """,
    "CREATE INDEX data_reconcile_repairs_name ON data_reconcile_repairs (replication, at)",
)

# The control-plane API (control/): bearer tokens, stored as the SHA-256 of their secret
# only, and the audit trail of every write made through the API. The listing of
# executions pages by (created_at, id), newest first, with or without a filter on the
# definition or the status: each has an index in that order, so a page reads only its rows.
_CONTROL_PLANE = (
    """
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY, -- the token's public prefix
        name TEXT NOT NULL,
        role TEXT NOT NULL, -- read, operate or admin
        secret_hash TEXT NOT NULL, -- SHA-256 of the whole token, hex; never the token
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )
    """,
    # One live token per name: revoking by name is unambiguous; a revoked name is reusable.
    "CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL",
    """
    CREATE TABLE api_audit (
        id TEXT PRIMARY KEY, -- time-ordered (UUIDv7)
        at DOUBLE PRECISION NOT NULL,
        token_name TEXT NOT NULL,
        role TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        operation TEXT NOT NULL, -- the OpenAPI operationId
        target TEXT, -- the id or name the write acted on, when it names one
        status INTEGER NOT NULL, -- the HTTP status answered
        request_id TEXT
    )
    """,
    "CREATE INDEX api_audit_at ON api_audit (at, id)",
    "CREATE INDEX orch_executions_newest ON orch_executions (created_at, id)",
    "CREATE INDEX orch_executions_name_newest ON orch_executions (name, created_at, id)",
    "DROP INDEX orch_executions_status",
    "CREATE INDEX orch_executions_status ON orch_executions (status, created_at, id)",
)


# The call rollup (observability/rollup.py): per minute and pair of services, how many
# calls the hybrid client made, how many failed, and the latency of those answered over a
# synchronous pattern in fixed buckets (``lat_00`` .. ``lat_16``: see ROLLUP_BUCKETS there;
# never change them without a new table). Writers add to a row, so every process's counts
# land in the same one. ``minute`` is the epoch second the minute starts at.
_CALL_ROLLUP_BUCKETS = 17
_CALL_ROLLUP = (
    f"""
    CREATE TABLE call_rollup (
        minute BIGINT NOT NULL,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        source_architecture TEXT NOT NULL,
        target_architecture TEXT NOT NULL,
        calls BIGINT NOT NULL, -- every call, client errors included
        failures BIGINT NOT NULL, -- nothing (no pattern, no cached answer) could answer
        client_errors BIGINT NOT NULL, -- refused as the caller's mistake (4xx)
        {", ".join(f"lat_{i:02d} BIGINT NOT NULL DEFAULT 0" for i in range(_CALL_ROLLUP_BUCKETS))},
        latency_sum DOUBLE PRECISION NOT NULL DEFAULT 0, -- seconds
        PRIMARY KEY (minute, source, target)
    )
    """,
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="services",
        statements=(
            """
            CREATE TABLE services (
                name TEXT PRIMARY KEY,
                architecture TEXT NOT NULL,
                version TEXT NOT NULL,
                base_url TEXT NOT NULL,
                owner TEXT,
                lifecycle TEXT,
                definition TEXT NOT NULL, -- the full service definition, as JSON
                source TEXT,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        version=2,
        name="events",
        statements=(_event_log("INTEGER PRIMARY KEY AUTOINCREMENT"), *_EVENTS),
        dialect_statements={
            "postgresql": (_event_log("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), *_EVENTS),
        },
    ),
    Migration(
        version=3,
        name="outbox and receipts",
        statements=(_outbox("INTEGER PRIMARY KEY AUTOINCREMENT"), *_RECEIPTS),
        dialect_statements={
            "postgresql": (_outbox("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), *_RECEIPTS),
        },
    ),
    Migration(version=4, name="orchestration", statements=_ORCHESTRATION),
    Migration(version=5, name="review queue", statements=_REVIEW),
    Migration(version=6, name="batch integration", statements=_BATCH),
    # PostgreSQL: room on each page of orch_executions for a new version of its rows, so
    # a save that changes no indexed column (most do not: see SAVE_HELD) is a HOT update,
    # written in place with no new index entries. A row holds the whole state (over 1 KB
    # for a few steps), so a full page left none. SQLite has no such setting.
    Migration(
        version=7,
        name="execution pages with room for updates",
        statements=(),
        dialect_statements={
            "postgresql": ("ALTER TABLE orch_executions SET (fillfactor = 50)",),
        },
    ),
    # A retired version of a definition starts no new executions (one stored by an older
    # release that cannot run, say); the ones under way finish on it.
    Migration(
        version=8,
        name="retired definition versions",
        statements=("ALTER TABLE orch_definitions ADD COLUMN retired_at DOUBLE PRECISION",),
    ),
    Migration(version=9, name="event log scans by type", statements=_EVENT_SCAN),
    Migration(version=10, name="gateway", statements=_GATEWAY),
    Migration(version=11, name="migration plans", statements=_MIGRATION_PLANS),
    Migration(version=12, name="feature flags", statements=_FLAGS),
    Migration(version=13, name="boundary experiments", statements=_BOUNDARY_EXPERIMENTS),
    Migration(version=14, name="data replications", statements=_DATA_REPLICATIONS),
    Migration(version=15, name="reconciliation", statements=_RECONCILIATION),
    Migration(version=16, name="projections", statements=_PROJECTIONS),
    Migration(version=17, name="control plane", statements=_CONTROL_PLANE),
    Migration(version=18, name="call rollup", statements=_CALL_ROLLUP),
)
"""Every migration, in version order. :meth:`Store.upgrade` applies the missing ones."""

check_migrations(MIGRATIONS)

__all__ = ["MIGRATIONS", "PROJECTION_TABLES"]
