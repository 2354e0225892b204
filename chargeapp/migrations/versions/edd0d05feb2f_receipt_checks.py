"""receipt_checks: what each receipt was last priced from, so the periodic pass reprices only what changed; receipts by issue time

Revision ID: edd0d05feb2f
Revises: 88ee514a5f03
Create Date: 2026-12-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa

import chargeapp.db  # noqa: F401  (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'edd0d05feb2f'
down_revision = '88ee514a5f03'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('receipt_checks',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('item_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('inputs', sa.String(length=64), nullable=False),
    sa.Column('due_at', chargeapp.db.UTCDateTime(), nullable=True),
    sa.Column('checked_at', chargeapp.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'item_id', name=op.f('pk_receipt_checks'))
    )
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.create_index('ix_receipts_issued', ['issued_at'], unique=False)


def downgrade():
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_index('ix_receipts_issued')

    op.drop_table('receipt_checks')
