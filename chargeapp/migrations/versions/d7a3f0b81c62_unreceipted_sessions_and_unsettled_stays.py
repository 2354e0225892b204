"""charging_sessions.receipted_at and partial indexes of sessions without their receipt and stays not settled,
so the periodic pass finds what is due without reading every session and stay ever closed

Revision ID: d7a3f0b81c62
Revises: c41e7a9d2b15
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa

import chargeapp.db  # noqa: F401  (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'd7a3f0b81c62'
down_revision = 'c41e7a9d2b15'
branch_labels = None
depends_on = None

UNRECEIPTED = "receipted_at IS NULL AND stopped_at IS NOT NULL"
UNSETTLED = "settled_at IS NULL AND exit_at IS NOT NULL"
# Sessions and stays that have their original receipt already: stamped with its issue time
# (tests/integration/test_cli_and_migrations.py runs these on both databases).
BACKFILL = (
    "UPDATE charging_sessions SET receipted_at = (SELECT min(r.issued_at) FROM receipts r "
    "WHERE r.kind = 'charging' AND r.session_id = charging_sessions.id) WHERE receipted_at IS NULL",
    "UPDATE parking_stays SET settled_at = (SELECT min(r.issued_at) FROM receipts r "
    "WHERE r.kind = 'parking' AND r.stay_id = parking_stays.id) "
    "WHERE settled_at IS NULL AND EXISTS (SELECT 1 FROM receipts r WHERE r.kind = 'parking' AND r.stay_id = parking_stays.id)",
)


def upgrade():
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('receipted_at', chargeapp.db.UTCDateTime(), nullable=True))
    for statement in BACKFILL:
        op.execute(statement)
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_charging_sessions_unreceipted', ['stopped_at'], unique=False,
                              sqlite_where=sa.text(UNRECEIPTED), postgresql_where=sa.text(UNRECEIPTED))
    with op.batch_alter_table('parking_stays', schema=None) as batch_op:
        batch_op.create_index('ix_parking_stays_unsettled', ['exit_at'], unique=False,
                              sqlite_where=sa.text(UNSETTLED), postgresql_where=sa.text(UNSETTLED))


def downgrade():
    with op.batch_alter_table('parking_stays', schema=None) as batch_op:
        batch_op.drop_index('ix_parking_stays_unsettled', sqlite_where=sa.text(UNSETTLED),
                            postgresql_where=sa.text(UNSETTLED))
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_charging_sessions_unreceipted', sqlite_where=sa.text(UNRECEIPTED),
                            postgresql_where=sa.text(UNRECEIPTED))
        batch_op.drop_column('receipted_at')
