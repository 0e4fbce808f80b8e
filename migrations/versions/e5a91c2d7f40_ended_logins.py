"""Ended logins: logging out ends one browser's session, not the account's every session

Revision ID: e5a91c2d7f40
Revises: b7d35e0c41a2
Create Date: 2026-12-07 07:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a91c2d7f40'
down_revision = 'b7d35e0c41a2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'ended_login',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('ended_login', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ended_login_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('ended_login', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ended_login_user_id'))
    op.drop_table('ended_login')
