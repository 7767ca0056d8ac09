"""The contract between the operator and the worker it runs: the worker's
environment variables and the keys of a pool's enrollment Secret.

A leaf module (it imports nothing), so that every side can read it without
crossing a layer: the CRD's reserved-env rule (`corral.api.v1alpha1`), the
Deployment builder and the Secret builder (`corral.controller.deployment`,
`corral.controller.enrollment`), and the worker's flags and settings
(`corral.worker.cli`, `corral.worker.config`). `tests/unit/test_workerenv.py`
checks that they agree. Renaming anything here is a change of the contract:
a worker and an operator of different versions must still understand each
other during an upgrade.
"""

from __future__ import annotations

# -- environment variables, by the WorkerSettings field they fill -------------
DATABASE_URL = "CORRAL_DATABASE_URL"
QUEUES = "CORRAL_QUEUES"
REGION = "CORRAL_REGION"
POOL = "CORRAL_POOL"  # the WorkerPool running the worker; unset for one started by hand
CONCURRENCY = "CORRAL_CONCURRENCY"
BATCH_SIZE = "CORRAL_BATCH_SIZE"
NAME = "CORRAL_NAME"
STATE_DIR = "CORRAL_STATE_DIR"
HTTP_HOST = "CORRAL_HTTP_HOST"
HTTP_PORT = "CORRAL_HTTP_PORT"
ENROLLMENT_TOKEN = "CORRAL_ENROLLMENT_TOKEN"
ENROLLMENT_TOKEN_FILE = "CORRAL_ENROLLMENT_TOKEN_FILE"
HANDLERS = "CORRAL_HANDLERS"
JOB_TIMEOUT = "CORRAL_JOB_TIMEOUT"
DRAIN_TIMEOUT = "CORRAL_DRAIN_TIMEOUT"  # SIGQUIT (and the pod's preStop) drain this long
TERM_GRACE = "CORRAL_TERM_GRACE"  # SIGTERM / SIGINT: this long, then hand back
HEARTBEAT_INTERVAL = "CORRAL_HEARTBEAT_INTERVAL"
POLL_INTERVAL = "CORRAL_POLL_INTERVAL"
FLUSH_INTERVAL = "CORRAL_FLUSH_INTERVAL"
LEASE = "CORRAL_LEASE"
RETENTION = "CORRAL_RETENTION"
STUCK_SHARE = "CORRAL_STUCK_SHARE"
EGRESS_DENY = "CORRAL_EGRESS_DENY"  # executor guard rules (corral.egressrules)
EGRESS_ALLOW = "CORRAL_EGRESS_ALLOW"
LOG_LEVEL = "CORRAL_LOG_LEVEL"  # read by the CLI only, not a WorkerSettings field
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # what it takes, in any case
WORKER_CONFIG = "CORRAL_WORKER_CONFIG"  # `corral worker --config` (corral.worker.configfile)

# WorkerSettings field -> its variable; error messages name both.
BY_SETTING: dict[str, str] = {
    "database_url": DATABASE_URL,
    "queues": QUEUES,
    "region": REGION,
    "pool": POOL,
    "concurrency": CONCURRENCY,
    "batch_size": BATCH_SIZE,
    "name": NAME,
    "state_dir": STATE_DIR,
    "http_host": HTTP_HOST,
    "http_port": HTTP_PORT,
    "enrollment_token": ENROLLMENT_TOKEN,
    "enrollment_token_file": ENROLLMENT_TOKEN_FILE,
    "handlers": HANDLERS,
    "job_timeout_s": JOB_TIMEOUT,
    "drain_timeout_s": DRAIN_TIMEOUT,
    "term_grace_s": TERM_GRACE,
    "heartbeat_interval_s": HEARTBEAT_INTERVAL,
    "poll_interval_s": POLL_INTERVAL,
    "flush_interval_s": FLUSH_INTERVAL,
    "lease_s": LEASE,
    "retention_s": RETENTION,
    "stuck_share": STUCK_SHARE,
    "egress_deny": EGRESS_DENY,
    "egress_allow": EGRESS_ALLOW,
}

# What the operator sets on every worker container from the pool's spec and
# its enrollment Secret (corral.controller.deployment builds exactly these).
SET_BY_OPERATOR: tuple[str, ...] = (
    NAME,
    QUEUES,
    REGION,
    POOL,
    CONCURRENCY,
    STATE_DIR,
    HTTP_PORT,
    DRAIN_TIMEOUT,
    TERM_GRACE,
    DATABASE_URL,
    ENROLLMENT_TOKEN_FILE,
    EGRESS_DENY,
    EGRESS_ALLOW,
)

# What a pool's `spec.template.env` may not set (the CRD rejects it): the
# variables above, which would silently fight the spec (the executor guard's
# lists come from `spec.egress`), plus two that would move the endpoint the
# probes call or the token's source. The order is the
# one the generated CRD lists them in.
RESERVED: tuple[str, ...] = (
    DATABASE_URL,
    QUEUES,
    REGION,
    POOL,
    CONCURRENCY,
    NAME,
    STATE_DIR,
    HTTP_HOST,
    HTTP_PORT,
    ENROLLMENT_TOKEN,
    ENROLLMENT_TOKEN_FILE,
    DRAIN_TIMEOUT,
    TERM_GRACE,
    EGRESS_DENY,
    EGRESS_ALLOW,
)

# -- the enrollment Secret the operator writes for each pool ------------------
SECRET_TOKEN_KEY = "token"  # the enrollment token (rotated before it expires), mounted as a file
# The workers' database URL (a member of corral_worker only) the operator was
# given, copied in when the pool names no database of its own (a pod reads
# only Secrets of its own namespace). Never the operator's own URL.
SECRET_DATABASE_URL_KEY = "database-url"
