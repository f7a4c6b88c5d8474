"""logins: failed PINs counted across the cluster, sessions remember the user's version

* `login_failures` held one node-local counter per user (a fixed 5-minute lock anyone
  could renew). It now holds one row per journaled `user.login_failed` / `user.unlock`
  (derived from the journal like `users`; `app/services/shop/lockout.py` turns a user's rows
  into an exponential back-off). The old counters are dropped: they were local and
  short-lived, and the journal holds no failures from before this revision.
* `auth_sessions.user_version`: users.version when the session began. A PIN reset,
  deactivation or demotion applied later (on any till, from the journal) ends it.
  Sessions from before this revision get 0: the next such change ends them too.

The PIN hashes themselves are rewritten at start (`users.pepper_stored_hashes`), not
here: the rewrite needs the shop's pepper, which lives beside the database, not in it.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table('login_failures')
    op.create_table(
        'login_failures',
        sa.Column('event_id', sa.String(length=32), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('at_ms', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.create_index('ix_login_failures_user_at', 'login_failures', ['username', 'at_ms'])
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_version', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_index('ix_auth_sessions_username', ['username'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_sessions_username')
        batch_op.drop_column('user_version')
    op.drop_index('ix_login_failures_user_at', table_name='login_failures')
    op.drop_table('login_failures')
    op.create_table(
        'login_failures',
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('locked_until_ms', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('username'),
    )
