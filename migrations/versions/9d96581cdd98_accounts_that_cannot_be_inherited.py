"""Accounts that cannot be inherited: ids never reused, random session keys, disabled accounts, login throttle

Revision ID: 9d96581cdd98
Revises: 9f7699914d8d
Create Date: 2026-11-26 10:50:48.000000

"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9d96581cdd98'
down_revision = '9f7699914d8d'
branch_labels = None
depends_on = None

user = sa.table('user', sa.column('id', sa.Integer), sa.column('session_key', sa.String))
api_token = sa.table('api_token', sa.column('user_id', sa.Integer))


def sqlite_autoincrement(table_name, on):
    """Rebuild a table on SQLite with or without AUTOINCREMENT (PostgreSQL's sequences never reuse ids)."""
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table(table_name, recreate='always', table_kwargs={'sqlite_autoincrement': on}):
            pass


def upgrade():
    # Foreign keys were off on SQLite: tokens of deleted accounts are still there, waiting for their id.
    op.execute(api_token.delete().where(api_token.c.user_id.not_in(sa.select(user.c.id))))
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_key', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(user.c.id)).all():
        connection.execute(user.update().where(user.c.id == user_id).values(session_key=secrets.token_urlsafe(16)))
    with op.batch_alter_table('user', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('session_key', existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_column('session_version')
    sqlite_autoincrement('api_token', True)

    op.drop_table('login_failure')
    op.create_table('login_throttle',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('username', 'address')
    )
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_throttle_window_start'), ['window_start'], unique=False)


def downgrade():
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_throttle_window_start'))
    op.drop_table('login_throttle')
    op.create_table('login_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_failure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_failure_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_failure_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_failure_username'), ['username'], unique=False)

    sqlite_autoincrement('api_token', False)
    with op.batch_alter_table('user', schema=None, table_kwargs={'sqlite_autoincrement': False}) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('session_key')
