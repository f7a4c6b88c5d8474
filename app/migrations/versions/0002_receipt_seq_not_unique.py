"""receipt numbers: (device_id, receipt_seq) no longer unique

A till that lost its disk can print a receipt number again before it learns the
numbers it gave out earlier. The journal then holds two sales with one number; the
derived table must take both (apply.py files the later one under a suffixed number),
so the pair is indexed, not unique. `receipt_no` itself stays unique.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sales_device_receipt', type_='unique')
        batch_op.create_index('ix_sales_device_receipt', ['device_id', 'receipt_seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sales', schema=None) as batch_op:
        batch_op.drop_index('ix_sales_device_receipt')
        batch_op.create_unique_constraint('uq_sales_device_receipt', ['device_id', 'receipt_seq'])
