"""Usage records and their daily rollups name the /v1 endpoint each request was for.

Every row so far is a chat completion, and the column's database default says so: on PostgreSQL 11 and later
adding a column with a constant default changes only the catalog, without rewriting the table. The rollups'
unique constraint gains the endpoint, so a key's use of one model on two endpoints in a day makes two rows; the
rollup table is small, so its index is rebuilt in place. The usage table is altered last: its lock, which the
gateway's inserts wait on, is held from the ALTER to the commit, so nothing else runs while it is held.
"""

from django.db import migrations, models

ENDPOINTS = [
    ("chat.completions", "Chat completions"),
    ("embeddings", "Embeddings"),
    ("completions", "Completions"),
    ("responses", "Responses"),
    ("messages", "Messages"),
]


def endpoint_field() -> models.CharField:
    return models.CharField(
        choices=ENDPOINTS, db_default="chat.completions", default="chat.completions", max_length=32
    )


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0004_usagerecord_note"),
    ]

    operations = [
        migrations.AddField(model_name="dailyusage", name="endpoint", field=endpoint_field()),
        migrations.RemoveConstraint(model_name="dailyusage", name="daily_usage_unique"),
        migrations.AddConstraint(
            model_name="dailyusage",
            constraint=models.UniqueConstraint(
                fields=("user", "key", "model", "endpoint", "day"), name="daily_usage_unique"
            ),
        ),
        migrations.AddField(model_name="usagerecord", name="endpoint", field=endpoint_field()),
    ]
