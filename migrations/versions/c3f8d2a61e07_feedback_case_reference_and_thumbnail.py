"""A recorded assessment's case reference and face thumbnail, each kept only where the site opts in

Revision ID: c3f8d2a61e07
Revises: e5a91c2d7f40
Create Date: 2026-12-07 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3f8d2a61e07'
down_revision = 'e5a91c2d7f40'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_reference', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('thumbnail', sa.LargeBinary(), nullable=True))


def downgrade():
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_column('thumbnail')
        batch_op.drop_column('case_reference')
