"""periodic_cursors: where the receipts pass stopped, so it looks at a large 24-hour window in turns

Revision ID: c41e7a9d2b15
Revises: edd0d05feb2f
Create Date: 2026-11-30 23:40:00

"""
from alembic import op
import sqlalchemy as sa

import chargeapp.db  # noqa: F401  (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'c41e7a9d2b15'
down_revision = 'edd0d05feb2f'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('periodic_cursors',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('moved_at', chargeapp.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_periodic_cursors'))
    )


def downgrade():
    op.drop_table('periodic_cursors')
