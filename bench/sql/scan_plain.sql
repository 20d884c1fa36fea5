SELECT full_name, email, phone FROM big_plain;
