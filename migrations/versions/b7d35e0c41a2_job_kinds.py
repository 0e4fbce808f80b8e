"""Job kinds: a dataset import runs as a job beside trainings

Revision ID: b7d35e0c41a2
Revises: 4c1e7a2b9f30
Create Date: 2026-11-28 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d35e0c41a2'
down_revision = '4c1e7a2b9f30'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('training_job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='training', nullable=False))
        batch_op.create_index(batch_op.f('ix_training_job_kind'), ['kind'], unique=False)


def downgrade():
    with op.batch_alter_table('training_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_job_kind'))
        batch_op.drop_column('kind')
