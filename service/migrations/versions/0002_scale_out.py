"""Schema 2: job claims with heartbeats, and worker capabilities (several hosts).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("heartbeat_at", sa.DateTime))
    op.add_column("jobs", sa.Column("requires_gpu", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("tags_json", sa.Text, nullable=False, server_default="[]"))
    op.add_column("daemons", sa.Column("roles", sa.String(64), nullable=False, server_default="watch,work"))
    op.add_column("daemons", sa.Column("home", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("daemons") as batch:
        batch.drop_column("home")
        batch.drop_column("roles")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tags_json")
        batch.drop_column("requires_gpu")
        batch.drop_column("heartbeat_at")
