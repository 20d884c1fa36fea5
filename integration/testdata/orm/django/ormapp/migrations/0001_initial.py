# The tables exist before the application runs (pgcloak needs the bytea
# columns in place): this migration is applied with --fake.
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Customer",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("email", models.TextField(unique=True)),
                ("full_name", models.TextField()),
                ("phone", models.CharField(max_length=32, null=True)),
                ("birth_date", models.DateField(null=True)),
                ("credit_limit", models.DecimalField(decimal_places=2, max_digits=12, null=True)),
                ("tier", models.TextField(default="basic")),
                ("version", models.IntegerField(default=0)),
            ],
            options={"db_table": "customers"},
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("product", models.TextField()),
                ("quantity", models.IntegerField()),
                ("note", models.TextField(null=True)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="orders", to="ormapp.customer")),
            ],
            options={"db_table": "orders"},
        ),
    ]
