"""who approved a stock movement; which tenders a refund paid back

* `stock_movements.approved_by`: the manager whose PIN approved the receive, adjustment,
  refund or void that moved the stock (NULL when the user acted on their own role).
* `refunds.tenders`: `[{method, amount_cents}, ...]`, how the money went back (the sale's
  own tenders in proportion, or the tender a manager chose). Every refund before this
  revision was paid in cash: those rows get `[{"method": "cash", "amount_cents": <all>}]`.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_by', sa.String(length=64), nullable=True))
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenders', sa.JSON(), nullable=True))
    op.execute("UPDATE refunds SET tenders = json_array(json_object("
               "'method', method, 'amount_cents', amount_cents)) WHERE tenders IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('tenders')
    with op.batch_alter_table('stock_movements', schema=None) as batch_op:
        batch_op.drop_column('approved_by')
