"""Schema 1: the job history and the daemons of the first release.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("staged", sa.Boolean, nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("inputs_json", sa.Text, nullable=False),
        sa.Column("outputs_json", sa.Text, nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("progress_json", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("run_id", sa.String(64)),
        sa.Column("outbox_dir", sa.Text),
        sa.Column("size", sa.Integer),
        sa.Column("iterations", sa.Integer),
        sa.Column("duration_s", sa.Float),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", "staged", "priority", "submitted_at"])
    op.create_index("ix_jobs_submitted", "jobs", ["submitted_at"])
    op.create_index("ix_jobs_name", "jobs", ["name"])
    op.create_table(
        "daemons",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("device", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("current_job", sa.Integer),
        sa.Column("stopped", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("daemons")
    op.drop_table("jobs")
