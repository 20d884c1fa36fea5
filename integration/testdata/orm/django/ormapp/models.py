import os

from django.db import models

from .fields import ProtectedTextField


# The model declares the logical types pgcloak's config gives the protected
# columns (email, full_name, phone, birth_date, credit_limit, orders.note):
# PostgreSQL holds them as bytea, the application sees these types.
class Customer(models.Model):
    email = models.TextField(unique=True)
    full_name = models.TextField()
    phone = models.CharField(max_length=32, null=True)
    birth_date = models.DateField(null=True)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    tier = models.TextField(default="basic")
    version = models.IntegerField(default=0)
    if os.environ.get("ORM_PHASE") == "migrated":
        nickname = ProtectedTextField(null=True)

    class Meta:
        app_label = "ormapp"
        db_table = "customers"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    product = models.TextField()
    quantity = models.IntegerField()
    note = models.TextField(null=True)

    class Meta:
        app_label = "ormapp"
        db_table = "orders"
