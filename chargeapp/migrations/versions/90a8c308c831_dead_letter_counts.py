"""dead_letter_counts: refused messages per source and hour, and how many the hourly cap dropped

The bridge stores at most CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR dead letters per source (a device's topics) and
hour and counts the rest here, so a manager sees what was dropped after restarts; the periodic work prunes these
rows with the dead letters (CHARGEAPP_DEAD_LETTER_RETENTION_DAYS).

Revision ID: 90a8c308c831
Revises: e5b19c07a4d3
Create Date: 2026-12-08 01:00:00

"""
from alembic import op
import sqlalchemy as sa

import chargeapp.db  # noqa: F401  (UTCDateTime)


# revision identifiers, used by Alembic.
revision = '90a8c308c831'
down_revision = 'e5b19c07a4d3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('dead_letter_counts',
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('hour', chargeapp.db.UTCDateTime(), nullable=False),
    sa.Column('station_code', sa.String(length=64), nullable=True),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('dropped', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'hour', name=op.f('pk_dead_letter_counts'))
    )
    with op.batch_alter_table('dead_letter_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_counts_hour'), ['hour'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_counts_station_code'), ['station_code'], unique=False)



def downgrade():
    with op.batch_alter_table('dead_letter_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letter_counts_station_code'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_counts_hour'))

    op.drop_table('dead_letter_counts')
