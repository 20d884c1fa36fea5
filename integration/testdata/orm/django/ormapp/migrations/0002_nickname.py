# A protected column added by a migration: ProtectedTextField creates it as
# bytea; pgcloak's config gets the rule (type: text) before the application
# uses it.
from django.db import migrations

from ormapp.fields import ProtectedTextField


class Migration(migrations.Migration):
    dependencies = [("ormapp", "0001_initial")]
    operations = [
        migrations.AddField(model_name="customer", name="nickname", field=ProtectedTextField(null=True)),
    ]
