"""receipt_checks.checked_at indexed: the receipts pass prunes old digests without reading the table

After each save the pass drops digests older than its 24-hour window; a network's day is ~53,000 rows.

Revision ID: e5b19c07a4d3
Revises: d7a3f0b81c62
Create Date: 2026-12-01 02:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e5b19c07a4d3'
down_revision = 'd7a3f0b81c62'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('receipt_checks', schema=None) as batch_op:
        batch_op.create_index('ix_receipt_checks_checked_at', ['checked_at'], unique=False)


def downgrade():
    with op.batch_alter_table('receipt_checks', schema=None) as batch_op:
        batch_op.drop_index('ix_receipt_checks_checked_at')
