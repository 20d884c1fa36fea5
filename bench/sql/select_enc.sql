\set id random(1, 10000)
SELECT full_name, email, phone FROM t_enc WHERE id = :id;
