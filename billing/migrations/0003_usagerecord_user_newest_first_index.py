"""The usage table's (user, -created_at) index becomes (user, -created_at, -request_id): the usage page's order,
ties included, so its pages can skip requests in the index alone (see billing.selectors.UsageRecordPages).

On PostgreSQL both steps run CONCURRENTLY: building the index over millions of rows takes minutes, and a plain
CREATE INDEX would block the gateway's inserts for all of them. The new index is built before the old one is
dropped, so the pages have an index throughout. Elsewhere (SQLite, for trying the project out) they are plain.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex, RemoveIndex


def _postgres(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexOnline(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("billing", "0002_initial"),
    ]

    operations = [
        AddIndexOnline(
            model_name="usagerecord",
            index=models.Index(fields=["user", "-created_at", "-request_id"], name="billing_usa_user_id_9e4b19_idx"),
        ),
        RemoveIndexOnline(model_name="usagerecord", name="billing_usa_user_id_48463c_idx"),
    ]
