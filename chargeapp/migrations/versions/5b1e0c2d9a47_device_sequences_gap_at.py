"""device_sequences.gap_at: when a device's last sequence gap was found, for the managers' attention list

Revision ID: 5b1e0c2d9a47
Revises: 30c5c98b9823
Create Date: 2026-11-30 15:00:00

"""
from alembic import op
import sqlalchemy as sa

import chargeapp.db  # noqa: F401  (UTCDateTime)


# revision identifiers, used by Alembic.
revision = '5b1e0c2d9a47'
down_revision = '30c5c98b9823'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('device_sequences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gap_at', chargeapp.db.UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('device_sequences', schema=None) as batch_op:
        batch_op.drop_column('gap_at')
